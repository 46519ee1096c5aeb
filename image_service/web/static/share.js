// A share link's gallery: reads the link's JSON (the same URL, asked for JSON) and shows its
// renditions. The link is the page's own address; a password, if the link has one, is sent as
// a header, never in a URL.
"use strict";

const $ = (id) => document.getElementById(id);
const token = decodeURIComponent(location.pathname.split("/").pop());
let password = null;
let cursor = null;

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function card(image) {
  const names = Object.keys(image.renditions);
  const preferred = names.includes("card") ? "card" : names[0];
  const picture = element("img", {
    src: image.renditions[preferred],
    alt: "",
    width: "240",
  });
  if (image.placeholder) picture.style.backgroundColor = image.placeholder;
  // A first view renders each image once; renders are bounded per owner, so some are refused
  // for a moment (503): asked again, backing off, as a careful client does.
  let tries = 0;
  picture.addEventListener("error", () => {
    if (++tries > 6) return;
    setTimeout(() => { picture.src = image.renditions[preferred]; }, 500 * 2 ** tries);
  });
  const links = element("div", { class: "meta" });
  for (const name of names) {
    links.append(element("a", { href: image.renditions[name], rel: "noreferrer" }, name), " ");
  }
  if (image.download) {
    links.append(element("a", { href: image.download, rel: "noreferrer", download: "" }, "original"));
  }
  return element("li", { class: "card", dataset: { imageId: image.image_id } }, picture, links);
}

async function load() {
  const query = new URLSearchParams({ limit: "50" });
  if (cursor) query.set("cursor", cursor);
  const headers = { Accept: "application/json" };
  if (password) headers["Share-Password"] = password;
  const response = await fetch(`/s/${encodeURIComponent(token)}?${query}`, { headers });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) {
    $("password-form").hidden = false;
    $("password-error").textContent = password ? "Wrong password." : "";
    document.body.dataset.state = "password";
    return;
  }
  if (!response.ok) {
    const gone = response.status === 410;
    $("message").textContent = gone ? "This link has ended." : "This link does not exist.";
    $("gallery").replaceChildren();
    document.body.dataset.state = gone ? "gone" : "missing";
    if (response.status === 429) $("message").textContent = "Too many tries; wait a minute.";
    return body;
  }
  $("password-form").hidden = true;
  $("expires").textContent = `Until ${new Date(body.expires_at).toLocaleString()}`;
  $("gallery").append(...body.images.map(card));
  cursor = body.next_cursor;
  $("more").hidden = !cursor;
  if (!$("gallery").children.length) $("message").textContent = "Nothing to show.";
  document.body.dataset.state = "shown";
  return body;
}

$("password-form").addEventListener("submit", (event) => {
  event.preventDefault();
  password = $("password").value;
  $("gallery").replaceChildren();
  cursor = null;
  load();
});
$("more").addEventListener("click", () => load());
load();
