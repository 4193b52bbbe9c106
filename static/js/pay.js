// 我的付款码: count down, fetch a fresh code before the old one expires, and notice when the shop took it.
(function () {
  "use strict";
  var box = document.getElementById("pay");
  if (!box) { return; }
  var left = parseInt(box.dataset.secondsLeft || "0", 10);
  var statusUrl = box.dataset.statusUrl || null;
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
        statusUrl = code.status;
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
  if (!statusUrl) { fresh(); }
  window.setInterval(function () {
    if (finished) { return; }
    left -= 1;
    render();
    if (left <= 15) { fresh(); left = 9999; }
  }, 1000);
  window.setInterval(poll, 2000);
})();
