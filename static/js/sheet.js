// 评分表: send each photo to the server the moment it is taken, and keep its id in the form, so a
// sheet sent back for another row loses no photo. Without this file the photos come with the sheet
// and the server keeps them just the same.
(function () {
  "use strict";
  var form = document.getElementById("sheet-form");
  if (!form || !window.fetch || !window.FormData) { return; }

  function say(box, text) {
    var note = box.querySelector(".upload-error");
    if (!note) {
      note = document.createElement("p");
      note.className = "field-error upload-error";
      note.setAttribute("role", "alert");
      box.appendChild(note);
    }
    note.textContent = text;
    note.hidden = !text;
  }

  form.querySelectorAll(".sheet-camera input[type=file]").forEach(function (input) {
    input.addEventListener("change", function () {
      var box = input.closest(".sheet-camera");
      if (!input.files || !input.files.length) { return; }
      var data = new FormData();
      data.append("photo", input.files[0]);
      say(box, "");
      box.classList.add("uploading");
      fetch(form.dataset.uploadUrl, {method: "POST", body: data, credentials: "same-origin",
                                     headers: {"Accept": "application/json", "X-CSRFToken": form.dataset.csrf}})
        .then(function (r) {
          return r.json().then(function (body) { return {ok: r.ok, body: body}; });
        })
        .then(function (answer) {
          box.classList.remove("uploading");
          if (!answer.ok) {
            say(box, (answer.body.error && answer.body.error.message) || "");
            return;
          }
          box.querySelector("input[type=hidden]").value = answer.body.id;
          var kept = box.querySelector(".kept");
          kept.querySelector("img").src = answer.body.thumb;
          kept.hidden = false;
          input.value = "";  // kept on the server: the sheet need not send it again
        })
        .catch(function () {
          // Offline or a server error: the photo stays in the field and goes with the sheet.
          box.classList.remove("uploading");
        });
    });
  });
})();
