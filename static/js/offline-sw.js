// Service worker of the clerk's offline page (served as /shop/offline-sw.js, scope /shop/).
// It keeps the page, its script, styles and data (items, the village's public key, the store's
// open vouchers) so the page opens with no network. Network first: a fresh copy replaces the kept
// one whenever the network answers. Every other request is left alone.
"use strict";
var CACHE = "moralbank-offline-v1";
var KEPT = ["/shop/offline", "/shop/offline/data", "/static/js/offline.js", "/static/vendor/jsQR.js",
            "/static/css/app.css", "/static/js/app.js"];

self.addEventListener("install", function (event) {
  event.waitUntil(caches.open(CACHE).then(function (cache) {
    return Promise.all(KEPT.map(function (path) {
      return fetch(path, {credentials: "same-origin", cache: "no-store"}).then(function (response) {
        if (response.ok && !response.redirected) { return cache.put(path, response); }
      }).catch(function () { /* kept on the next visit */ });
    }));
  }).then(function () { return self.skipWaiting(); }));
});

self.addEventListener("activate", function (event) {
  event.waitUntil(caches.keys().then(function (names) {
    return Promise.all(names.filter(function (name) { return name !== CACHE; })
      .map(function (name) { return caches.delete(name); }));
  }).then(function () { return self.clients.claim(); }));
});

self.addEventListener("fetch", function (event) {
  var request = event.request;
  if (request.method !== "GET") { return; }
  var url = new URL(request.url);
  if (url.origin !== self.location.origin || KEPT.indexOf(url.pathname) < 0) { return; }
  event.respondWith(fetch(request).then(function (response) {
    if (response.ok && !response.redirected) {
      var copy = response.clone();
      caches.open(CACHE).then(function (cache) { cache.put(url.pathname, copy); });
      return response;
    }
    return caches.match(url.pathname).then(function (kept) { return kept || response; });
  }).catch(function () {
    return caches.match(url.pathname).then(function (kept) {
      return kept || new Response("offline", {status: 503, headers: {"Content-Type": "text/plain"}});
    });
  }));
});
