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
