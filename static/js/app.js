// Small progressive enhancements; every page works without this file.
(function () {
  "use strict";
  // "Select all" boxes: <input type="checkbox" data-select-all="award"> toggles every input[name=award].
  document.querySelectorAll("input[data-select-all]").forEach(function (box) {
    box.addEventListener("change", function () {
      document.querySelectorAll('input[name="' + box.dataset.selectAll + '"]').forEach(function (b) {
        b.checked = box.checked;
      });
    });
  });
  // Forms that change points are sent once: the second tap waits for the first.
  document.querySelectorAll("form[method=post]").forEach(function (form) {
    form.addEventListener("submit", function () {
      window.setTimeout(function () {
        form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
      }, 0);
    });
  });
})();
(function () {
  "use strict";
  // Print buttons.
  document.querySelectorAll("[data-print]").forEach(function (b) {
    b.addEventListener("click", function () { window.print(); });
  });
  // The shop cart: show the total as the clerk types quantities.
  var cart = document.getElementById("cart");
  if (cart) {
    var update = function () {
      var total = 0;
      cart.querySelectorAll("input.qty").forEach(function (q) {
        total += (parseInt(q.value, 10) || 0) * parseInt(q.dataset.points, 10);
      });
      var extra = parseInt((document.getElementById("points") || {}).value, 10) || 0;
      document.getElementById("total").textContent = total + extra;
    };
    cart.addEventListener("input", update);
    update();
  }
})();
