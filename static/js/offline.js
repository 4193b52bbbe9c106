// The clerk's offline page: checks offline vouchers with no network and keeps the sales on this
// device (IndexedDB) until they sync. A scanned voucher is checked by its ECDSA P-256 signature
// (WebCrypto) with the village's public key; a typed 8-digit number by the PBKDF2 check of the
// store's open vouchers downloaded while online. Each sale is kept by voucher id, so a voucher is
// taken once on this device, and the server posts each voucher once whatever the devices send.
(function () {
  "use strict";
  var root = document.getElementById("offline");
  if (!root) { return; }
  var words = document.getElementById("words").dataset;
  var DATA_KEY = "moralbank-offline-data";
  var data = null;
  var publicKey = null;
  var current = null;  // the voucher being taken: {id, points, household, label, token, expires}
  var $ = function (id) { return document.getElementById(id); };

  // --- IndexedDB: the sales of this device, by voucher id ----------------------------------------
  function openDb() {
    return new Promise(function (resolve, reject) {
      var request = indexedDB.open("moralbank-offline", 1);
      request.onupgradeneeded = function () { request.result.createObjectStore("sales", {keyPath: "voucher_id"}); };
      request.onsuccess = function () { resolve(request.result); };
      request.onerror = function () { reject(request.error); };
    });
  }
  function tx(mode, work) {
    return openDb().then(function (db) {
      return new Promise(function (resolve, reject) {
        var t = db.transaction("sales", mode);
        var result = work(t.objectStore("sales"));
        t.oncomplete = function () { resolve(result && "result" in result ? result.result : undefined); };
        t.onerror = function () { reject(t.error); };
      });
    });
  }
  var allSales = function () { return tx("readonly", function (s) { return s.getAll(); }); };
  var getSale = function (id) { return tx("readonly", function (s) { return s.get(id); }); };
  var putSale = function (sale) { return tx("readwrite", function (s) { s.put(sale); }); };

  // --- helpers -------------------------------------------------------------------------------------
  function b64bytes(text) {
    var s = text.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) { s += "="; }
    var raw = atob(s), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
    return out;
  }
  function hexBytes(hex) {
    var out = new Uint8Array(hex.length / 2);
    for (var i = 0; i < out.length; i++) { out[i] = parseInt(hex.substr(i * 2, 2), 16); }
    return out;
  }
  function toHex(buffer) {
    return Array.prototype.map.call(new Uint8Array(buffer), function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  function say(text, ok) {
    var v = $("verdict");
    v.textContent = text;
    v.className = !text ? "" : ok ? "flash" : "field-error";
  }
  function showNet() { $("net").textContent = navigator.onLine ? words.online : words.offline; }

  // --- the kept data -------------------------------------------------------------------------------
  function loadData() {
    return fetch(root.dataset.dataUrl, {credentials: "same-origin"}).then(function (r) {
      if (!r.ok || r.redirected) { throw new Error("no data"); }
      return r.json();
    }).then(function (fresh) {
      try { localStorage.setItem(DATA_KEY, JSON.stringify(fresh)); } catch (e) { /* full */ }
      return fresh;
    }).catch(function () {
      var kept = localStorage.getItem(DATA_KEY);
      return kept ? JSON.parse(kept) : null;
    }).then(function (loaded) {
      data = loaded;
      if (!data) { return null; }
      return crypto.subtle.importKey("jwk", data.key, {name: "ECDSA", namedCurve: "P-256"}, false, ["verify"])
        .then(function (key) { publicKey = key; return data; });
    });
  }

  // --- checking a voucher --------------------------------------------------------------------------
  function tokenOf(text) {
    text = text.trim();
    var at = text.indexOf("#v=");
    if (at >= 0) { return text.slice(at + 3); }
    return text;
  }
  function checkToken(token) {
    var parts = token.split(".");
    if (parts.length !== 3 || parts[0] !== "MB1" || !publicKey) { return Promise.reject(words.bad); }
    var signed = new TextEncoder().encode(parts[0] + "." + parts[1]);
    var signature;
    try { signature = b64bytes(parts[2]); } catch (e) { return Promise.reject(words.bad); }
    return crypto.subtle.verify({name: "ECDSA", hash: "SHA-256"}, publicKey, signature, signed).then(function (ok) {
      if (!ok) { throw words.bad; }
      var payload = JSON.parse(new TextDecoder().decode(b64bytes(parts[1])));
      var known = (data.vouchers || []).filter(function (v) { return v.id === payload.v; })[0];
      return {id: payload.v, points: payload.p, household: payload.h, store: payload.s, expires: payload.e,
              label: known ? known.label : words.household + " #" + payload.h, token: token};
    });
  }
  function checkCode(code) {
    var candidates = (data && data.vouchers) || [];
    var encoded = new TextEncoder().encode(code);
    return crypto.subtle.importKey("raw", encoded, "PBKDF2", false, ["deriveBits"]).then(function (key) {
      return candidates.reduce(function (found, v) {
        return found.then(function (hit) {
          if (hit) { return hit; }
          return crypto.subtle.deriveBits({name: "PBKDF2", salt: hexBytes(v.salt), iterations: data.rounds,
                                           hash: "SHA-256"}, key, 256).then(function (bits) {
            return toHex(bits) === v.check ? v : null;
          });
        });
      }, Promise.resolve(null));
    }).then(function (v) {
      if (!v) { throw words.unknown; }
      return {id: v.id, points: v.points, household: v.household, store: data.store.id, expires: v.expires,
              label: v.label, token: code};
    });
  }
  function check(text) {
    $("receipt").hidden = true;
    $("cart").hidden = true;
    if (!data) { say(words.unknown, false); return Promise.resolve(); }
    var token = tokenOf(text);
    var checking = /^\d{8}$/.test(token.replace(/\s/g, "")) ? checkCode(token.replace(/\s/g, "")) : checkToken(token);
    return checking.then(function (voucher) {
      if (voucher.store !== data.store.id) { throw words.foreign; }
      if (voucher.expires * 1000 <= Date.now()) { throw words.expired; }
      return getSale(voucher.id).then(function (sale) {
        if (sale) { throw words.used; }
        current = voucher;
        say(words.voucher + " #" + voucher.id + " · " + voucher.label + " · " + words.upto + " " + voucher.points, true);
        openCart();
      });
    }).catch(function (message) { current = null; say(typeof message === "string" ? message : words.bad, false); });
  }

  // --- the cart and the receipt --------------------------------------------------------------------
  function openCart() {
    var list = $("cart-items");
    list.textContent = "";
    data.items.forEach(function (item) {
      var li = document.createElement("li");
      var label = document.createElement("label");
      label.textContent = item.name + " · " + item.points + "/" + item.unit + " ";
      var input = document.createElement("input");
      input.type = "number"; input.min = "0"; input.value = "0"; input.className = "qty";
      input.dataset.item = item.id; input.dataset.points = item.points;
      input.setAttribute("inputmode", "numeric");
      label.appendChild(input);
      li.appendChild(label);
      list.appendChild(li);
    });
    $("extra-points").value = "0";
    $("cart-title").textContent = current.label;
    $("limit").textContent = current.points;
    $("cart-error").textContent = "";
    $("cart").hidden = false;
    total();
  }
  function cartLines() {
    return Array.prototype.filter.call(document.querySelectorAll("#cart-items .qty"), function (input) {
      return parseInt(input.value, 10) > 0;
    }).map(function (input) {
      return {item_id: parseInt(input.dataset.item, 10), quantity: parseInt(input.value, 10),
              points: parseInt(input.dataset.points, 10), name: input.parentNode.firstChild.textContent};
    });
  }
  function total() {
    var sum = cartLines().reduce(function (acc, line) { return acc + line.points * line.quantity; }, 0);
    sum += Math.max(parseInt($("extra-points").value, 10) || 0, 0);
    $("total").textContent = sum;
    return sum;
  }
  function take() {
    if (!current) { return; }
    var points = total();
    if (points <= 0) { $("cart-error").textContent = words.empty; return; }
    if (points > current.points) { $("cart-error").textContent = words.over; return; }
    var lines = cartLines();
    var sale = {voucher_id: current.id, token: current.token, points: points, label: current.label,
                items: lines.map(function (l) { return {item_id: l.item_id, quantity: l.quantity}; }),
                names: lines.map(function (l) { return l.name + " × " + l.quantity; }),
                taken_at: new Date().toISOString(), status: "pending"};
    getSale(sale.voucher_id).then(function (existing) {
      if (existing) { throw words.used; }
      return putSale(sale);
    }).then(function () {
      $("cart").hidden = true;
      $("receipt-voucher").textContent = sale.voucher_id;
      $("receipt-points").textContent = sale.points;
      var list = $("receipt-items");
      list.textContent = "";
      sale.names.forEach(function (name) { var li = document.createElement("li"); li.textContent = name; list.appendChild(li); });
      $("receipt").hidden = false;
      $("voucher-input").value = "";
      current = null;
      say("", true);
      showSales();
      if (navigator.onLine) { sync(); }
    }).catch(function (message) { $("cart-error").textContent = typeof message === "string" ? message : String(message); });
  }

  // --- the device's sales and the sync -------------------------------------------------------------
  function showSales() {
    return allSales().then(function (sales) {
      var list = $("sales");
      list.textContent = "";
      var pending = 0;
      sales.sort(function (a, b) { return a.taken_at < b.taken_at ? 1 : -1; }).forEach(function (sale) {
        if (sale.status === "pending") { pending += 1; }
        var li = document.createElement("li");
        li.dataset.voucher = sale.voucher_id;
        li.dataset.status = sale.status;
        li.textContent = words.voucher + " #" + sale.voucher_id + " · " + sale.label + " · −" + sale.points + " · " +
          (words[sale.status] || sale.status);
        list.appendChild(li);
      });
      $("pending-count").textContent = pending;
    });
  }
  var syncing = false;
  function sync() {
    if (syncing) { return Promise.resolve(); }
    syncing = true;
    return allSales().then(function (sales) {
      var waiting = sales.filter(function (s) { return s.status === "pending"; });
      if (!waiting.length) { return null; }
      return loadData().then(function () {
        var key = (self.crypto.randomUUID ? self.crypto.randomUUID() : String(Date.now()) + Math.random());
        return fetch(root.dataset.syncUrl, {
          method: "POST", credentials: "same-origin",
          headers: {"Content-Type": "application/json", "X-CSRFToken": data.csrf, "Idempotency-Key": key},
          body: JSON.stringify({sales: waiting.map(function (s) {
            return {token: s.token, points: s.points, items: s.items, taken_at: s.taken_at};
          })})
        });
      }).then(function (response) {
        if (!response.ok) { throw new Error("sync " + response.status); }
        return response.json();
      }).then(function (body) {
        return Promise.all(body.results.map(function (result, index) {
          var sale = waiting[index];
          sale.status = result.status;
          sale.redemption_id = result.redemption_id || null;
          return putSale(sale);
        }));
      }).then(function () { say(words.synced, true); });
    }).catch(function () { say(words["sync-failed"], false); })
      .then(function () { syncing = false; return showSales(); });
  }

  // --- the scanner (the browser's BarcodeDetector where it exists, else the vendored jsQR) ---------
  function scan() {
    var box = $("scanner"), video = $("camera");
    if (!navigator.mediaDevices) { say(words["no-camera"], false); return; }
    var canvas = document.createElement("canvas");
    var context = canvas.getContext("2d", {willReadFrequently: true});
    box.hidden = false;
    navigator.mediaDevices.getUserMedia({video: {facingMode: "environment"}}).then(function (stream) {
      video.srcObject = stream; video.play();
      (function tick() {
        if (video.readyState === video.HAVE_ENOUGH_DATA) {
          canvas.width = video.videoWidth; canvas.height = video.videoHeight;
          context.drawImage(video, 0, 0, canvas.width, canvas.height);
          var image = context.getImageData(0, 0, canvas.width, canvas.height);
          var found = window.jsQR ? window.jsQR(image.data, image.width, image.height) : null;
          if (found) {
            stream.getTracks().forEach(function (t) { t.stop(); });
            box.hidden = true;
            $("voucher-input").value = found.data;
            check(found.data);
            return;
          }
        }
        window.requestAnimationFrame(tick);
      })();
    }).catch(function () { box.hidden = true; say(words["no-camera"], false); });
  }

  // --- wiring --------------------------------------------------------------------------------------
  function fromHash() {
    if (location.hash.indexOf("#v=") === 0) {
      var token = location.hash.slice(3);
      history.replaceState(null, "", location.pathname);
      $("voucher-input").value = token;
      check(token);
    }
  }
  $("check-form").addEventListener("submit", function (event) { event.preventDefault(); check($("voucher-input").value); });
  $("cart").addEventListener("input", total);
  $("take").addEventListener("click", take);
  $("sync").addEventListener("click", function () { sync(); });
  $("scan-button").addEventListener("click", scan);
  window.addEventListener("online", function () { showNet(); sync(); });
  window.addEventListener("offline", showNet);
  window.addEventListener("hashchange", fromHash);
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register(root.dataset.workerUrl, {scope: "/shop/"}).catch(function () { /* no worker */ });
  }
  showNet();
  loadData().then(function () {
    root.dataset.ready = data ? "yes" : "no";
    fromHash();
    return showSales();
  }).then(function () { if (navigator.onLine) { sync(); } });
})();
