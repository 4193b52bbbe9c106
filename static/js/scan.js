// In-page scanner for the shop (camera access needs https or localhost). Uses the browser's
// BarcodeDetector where it exists, else the vendored jsQR. A code's URL opens the redeem page.
(function () {
  "use strict";
  var box = document.getElementById("scanner");
  var video = document.getElementById("camera");
  var status = document.getElementById("scan-status");
  if (!box || !navigator.mediaDevices) { status.textContent = "此浏览器不能在页面里扫码，请用相机扫码或输入号码。"; return; }
  var canvas = document.createElement("canvas");
  var context = canvas.getContext("2d", {willReadFrequently: true});
  function open(text) {
    try {
      var url = new URL(text, window.location.href);
      if (url.origin === window.location.origin) { window.location.href = url.href; return true; }
    } catch (e) { /* not a URL */ }
    if (/^\d{8}$/.test(text)) { window.location.href = box.dataset.redeemUrl + "?code=" + text; return true; }
    return false;
  }
  function tick() {
    if (video.readyState === video.HAVE_ENOUGH_DATA) {
      canvas.width = video.videoWidth; canvas.height = video.videoHeight;
      context.drawImage(video, 0, 0, canvas.width, canvas.height);
      var image = context.getImageData(0, 0, canvas.width, canvas.height);
      var found = window.jsQR ? window.jsQR(image.data, image.width, image.height) : null;
      if (found && open(found.data)) { return; }
    }
    window.requestAnimationFrame(tick);
  }
  navigator.mediaDevices.getUserMedia({video: {facingMode: "environment"}})
    .then(function (stream) { video.srcObject = stream; video.play(); window.requestAnimationFrame(tick); })
    .catch(function () { status.textContent = "没有相机权限。请用手机相机扫码，或输入号码。"; });
})();
