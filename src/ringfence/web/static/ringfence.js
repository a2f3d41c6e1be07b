// ringfence.js: the few htmx attribute conventions the dashboard uses, in a small script of our own.
//   hx-get + hx-trigger="every 5s"  fetch the URL every 5 s and swap the answer in (hx-swap: innerHTML or outerHTML)
//   form hx-post [+ hx-confirm]      ask first, post the form with fetch, swap the answer into hx-target
// Requests carry "HX-Request: true" so the server answers with a fragment; an "HX-Redirect" answer navigates.
// Without JavaScript the same forms post normally and every page is a plain page.
(function () {
  "use strict";

  function swap(target, html, how) {
    if (how === "outerHTML") {
      var holder = document.createElement("template");
      holder.innerHTML = html.trim();
      var nodes = Array.prototype.slice.call(holder.content.childNodes);
      target.replaceWith.apply(target, nodes);
      nodes.forEach(function (node) { if (node.nodeType === 1) process(node); });
    } else {
      target.innerHTML = html;
      process(target);
    }
  }

  function request(url, options, target, how) {
    options.headers = { "HX-Request": "true" };
    options.credentials = "same-origin";
    return fetch(url, options).then(function (response) {
      var redirect = response.headers.get("HX-Redirect");
      if (redirect) { window.location.assign(redirect); return; }
      return response.text().then(function (html) { swap(target, html, how); });
    });
  }

  function poll(el) {
    var every = /^every (\d+(?:\.\d+)?)(ms|s)$/.exec(el.getAttribute("hx-trigger") || "");
    if (!every || el.rfPolling) return;
    el.rfPolling = true;
    var period = parseFloat(every[1]) * (every[2] === "s" ? 1000 : 1);
    var timer = window.setInterval(function () {
      if (!el.isConnected) { window.clearInterval(timer); return; }  // swapped out: its successor polls
      if (document.hidden || el.rfBusy) return;
      el.rfBusy = true;
      request(el.getAttribute("hx-get"), { method: "GET" }, el, el.getAttribute("hx-swap") || "innerHTML")
        .catch(function () { /* a missed refresh is tried again at the next tick */ })
        .then(function () { el.rfBusy = false; });
    }, period);
  }

  function process(root) {
    if (root.matches("[hx-get][hx-trigger]")) poll(root);
    root.querySelectorAll("[hx-get][hx-trigger]").forEach(poll);
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var url = form.getAttribute("hx-post");
    if (!url) return;
    event.preventDefault();
    var question = form.getAttribute("hx-confirm");
    if (question && !window.confirm(question)) return;
    var selector = form.getAttribute("hx-target");
    var target = (selector && document.querySelector(selector)) || form;
    var body = new URLSearchParams(new FormData(form));
    form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    request(url, { method: "POST", body: body }, target, form.getAttribute("hx-swap") || "innerHTML")
      .catch(function () { form.submit(); });  // the network failed: fall back to a plain post
  });

  document.addEventListener("DOMContentLoaded", function () { process(document.body); });
})();
