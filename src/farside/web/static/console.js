// Farside console: live parts of server-rendered pages. No framework, no build step.
//
// <div data-live="/ui/fragment" data-classes="VM,SR" data-token="42">: long-polls /ui/events
// (event.from on the server, as the logged-in user) and reloads the fragment when those classes
// change. A fragment holding <span data-goto="/ui/next"> sends the browser there (the wizard moves
// on when its run pauses or ends). <pre data-serial="/ui/vms/<uuid>/serial.txt">: refreshed every 2 s.
"use strict";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function status(text) {
  for (const el of document.querySelectorAll("[data-live-status]")) el.textContent = text;
}

async function fetchOrLogin(url) {
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (response.status === 401) {
    window.location.assign("/ui/login?next=" + encodeURIComponent(window.location.pathname));
    throw new Error("logged out");
  }
  if (!response.ok) throw new Error(url + ": HTTP " + response.status);
  return response;
}

function follow(region) {
  const goto = region.querySelector("[data-goto]");
  if (goto) window.location.assign(goto.dataset.goto);
  return Boolean(goto);
}

async function reload(region) {
  const response = await fetchOrLogin(region.dataset.live);
  region.innerHTML = await response.text();
  region.dataset.updated = String(Date.now());
  return follow(region);
}

async function live(region) {
  let token = region.dataset.token || "";
  const classes = region.dataset.classes || "";
  if (follow(region)) return;
  // The page may have been rendered just before a change: catch up once before waiting. After
  // that the part is reloaded after every answer, changes or not (a quiet half-minute costs one
  // small request), so nothing is missed whatever the classes asked for.
  for (;;) {
    try {
      if (await reload(region)) return;
      status("live");
      const url = "/ui/events?token=" + encodeURIComponent(token) + "&classes=" + encodeURIComponent(classes);
      const answer = await (await fetchOrLogin(url)).json();
      token = answer.token;
    } catch (err) {
      if (err.message === "logged out") return;
      status("reconnecting…");
      await sleep(2000);
    }
  }
}

async function serial(pre) {
  for (;;) {
    await sleep(2000);
    try {
      const text = await (await fetchOrLogin(pre.dataset.serial)).text();
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      if (text !== pre.textContent) pre.textContent = text;
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    } catch (err) {
      if (err.message === "logged out") return;
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const region of document.querySelectorAll("[data-live]")) live(region);
  for (const pre of document.querySelectorAll("[data-serial]")) serial(pre);
  // Buttons that need a second thought (destroying a VM copy, a real failover).
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
});
