"""The foundation end to end: the demo village is there, people log in, the ledger is sound."""
from moralbank.ledger.verify import verify


def test_demo_village_has_its_people_and_ledger(ctx):
    from sqlalchemy import func, select

    from moralbank.extensions import db
    from moralbank.people.models import Household
    from moralbank.people.service import village_by_code

    blm = village_by_code("BLM")
    assert [h.name for h in blm.children] == ["八里庙屯", "前进屯", "东岗屯", "西沟屯"]
    assert db.session.scalar(select(func.count()).select_from(Household).where(Household.village_id == blm.id)) == 60
    report = verify()
    assert report.ok and report.transfers > 500


def test_login_page_is_chinese(client):
    page = client.get("/login")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "登录" in html and "手机号" in html and "密码" in html


def test_resident_logs_in_and_sees_balance(client, auth):
    response = auth.login("resident")
    assert response.status_code == 302
    home = client.get("/home").get_data(as_text=True)
    assert "我家的积分" in home
