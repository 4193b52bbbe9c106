// 我的付款码: count down, fetch a fresh code as the old one runs out, and notice when a shop took any of the
// household's codes since the page opened (the poll asks by household: the code on the screen may have
// changed after the clerk scanned it).
(function () {
  "use strict";
  var box = document.getElementById("pay");
  if (!box) { return; }
  var left = parseInt(box.dataset.secondsLeft || "0", 10);
  var statusUrl = box.dataset.statusUrl;
  var hasCode = box.dataset.hasCode === "1";
  var finished = false;

  function show(id, visible) { document.getElementById(id).hidden = !visible; }
  function render() {
    var m = Math.floor(Math.max(left, 0) / 60), s = Math.max(left, 0) % 60;
    document.getElementById("left").textContent = m + ":" + (s < 10 ? "0" : "") + s;
  }
  function fresh() {
    fetch(box.dataset.newUrl, {method: "POST", credentials: "same-origin",
                               headers: {"Accept": "application/json", "X-CSRFToken": box.dataset.csrf}})
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (code) {
        document.getElementById("qr").src = code.qr;
        document.getElementById("digits").textContent = code.pretty;
        left = code.seconds_left;
        show("code-area", true);
        render();
      })
      .catch(function () { left = 10; });
  }
  function poll() {
    if (!statusUrl || finished) { return; }
    fetch(statusUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (st) {
        document.getElementById("balance").textContent = st.balance;
        if (st.used) {
          finished = true;
          document.getElementById("spent").textContent = st.spent;
          show("code-area", false);
          show("done", true);
        }
      })
      .catch(function () {});
  }
  if (!hasCode) { fresh(); }
  window.setInterval(function () {
    if (finished) { return; }
    left -= 1;
    render();
    // A new code ends the old one, so swap only as it runs out: a clerk who is still filling the cart
    // with the old number keeps it to its last seconds.
    if (left <= 3) { fresh(); left = 9999; }
  }, 1000);
  window.setInterval(poll, 2000);
})();
