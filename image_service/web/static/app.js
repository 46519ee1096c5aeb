// The browser page of image_service: no build step, no CDN, no framework.
// Bytes go straight from the browser to S3 with the POST policy the API hands out; the API
// itself only ever sees small JSON. Everything shown is set with textContent, never as HTML.

const TOKEN_KEY = "image_service.token";
const PAGE_SIZE = 24;
const PROCESSING_WAIT_MS = 60_000;
// Larger files go up in parts, several at once, and resume after a reload (below).
const MULTIPART_THRESHOLD = 16 * 1024 * 1024;
const PART_SIZE = 8 * 1024 * 1024;
const PARTS_AT_ONCE = 4;
const RESUME_KEY_PREFIX = "image_service.upload:";
// The statuses an image passes through before it is ready or refused.
const IN_FLIGHT = new Set(["fetching", "pending", "processing"]);

const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem(TOKEN_KEY) || "", cursor: null };

class ApiError extends Error {
  constructor(status, code, message) {
    super(`${message} (${code})`);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = data?.error ?? {};
    throw new ApiError(response.status, error.code ?? `http_${response.status}`,
                       error.message ?? response.statusText);
  }
  return data;
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function showError(error) {
  const box = $("error");
  box.textContent = error ? String(error.message ?? error) : "";
  box.hidden = !error;
}

// -- the token ---------------------------------------------------------------------------------

function claims(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload));
  } catch {
    return null;
  }
}

function useToken(token) {
  state.token = token.trim();
  sessionStorage.setItem(TOKEN_KEY, state.token);
  $("token").value = state.token;
  const claimed = claims(state.token);
  $("who").textContent = claimed
    ? `Signed in as ${claimed.sub}; the token expires ${new Date(claimed.exp * 1000).toLocaleString()}.`
    : "That does not look like a JWT.";
  document.body.dataset.signedIn = claimed ? "true" : "false";
  if (claimed) {
    refreshGallery();
    refreshAlbums().catch(showError);
    followEvents();
  }
}

// The gallery follows the caller's image events (from any tab, device or replica) as they
// happen: a server-sent event stream, no polling. EventSource sends no header: the token goes
// in the query, which the service never logs.
let events = null;
let refreshSoon = null;

function followEvents() {
  events?.close();
  events = new EventSource(`/events?access_token=${encodeURIComponent(state.token)}`);
  const refresh = () => {
    clearTimeout(refreshSoon);
    refreshSoon = setTimeout(refreshGallery, 250);  // a burst of events: one refresh
  };
  // Whatever changes what the gallery shows, from this page or any other client: an image
  // updated (a new focal point) has new rendition URLs, its old ones answer 404.
  const shown = [
    "image.ready", "image.rejected", "image.quarantined", "image.deleted",
    "image.trashed", "image.restored", "image.updated",
  ];
  for (const type of shown) events.addEventListener(type, refresh);
}

async function mintToken() {
  const response = await fetch("/dev/token", { method: "POST" });
  if (!response.ok) throw new Error(`could not mint a token (${response.status})`);
  useToken((await response.json()).token);
}

// -- uploads -----------------------------------------------------------------------------------

function uploadRow(name) {
  const bar = element("progress", { max: "1", value: "0" });
  const status = element("span", { class: "muted" }, "waiting");
  const row = element("li", { dataset: { file: name } }, element("span", {}, name), bar, status);
  $("uploads").prepend(row);
  return {
    element: row,
    progress: (fraction) => { bar.value = fraction; },
    status: (text) => { status.textContent = text; row.dataset.status = text; },
    fail: (text) => {
      status.textContent = text;
      status.className = "status-rejected";
      row.dataset.status = "failed";
    },
  };
}

function sendToS3(ticket, file, onProgress) {
  // XMLHttpRequest, not fetch: only it reports upload progress. S3 reads the policy's fields
  // first and the file last.
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [name, value] of Object.entries(ticket.fields)) form.append(name, value);
    form.append("file", file);
    const request = new XMLHttpRequest();
    request.open("POST", ticket.upload_url);
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    request.onload = () => (request.status >= 200 && request.status < 300
      ? resolve()
      : reject(new Error(`S3 refused the upload (${request.status})`)));
    request.onerror = () => reject(new Error("S3 could not be reached"));
    request.send(form);
  });
}

async function waitUntilProcessed(imageId) {
  // The service holds each request until the image is processed (or 20 s): no polling.
  const deadline = Date.now() + PROCESSING_WAIT_MS;
  for (;;) {
    const image = await api("GET", `/images/${imageId}?wait=ready&timeout=20`);
    if (!IN_FLIGHT.has(image.status)) return image;
    if (Date.now() > deadline) throw new Error("still processing; refresh later");
  }
}

function splitTags(text) {
  return [...new Set(text.split(",").map((tag) => tag.trim()).filter(Boolean))];
}

// -- large files: in parts, resumable ----------------------------------------------------------
// The page remembers (localStorage) which image a file's parts belong to, by the file's name,
// size and modification time; choosing the same file after a reload or a crash asks the API
// which parts S3 already holds and sends only the others.

function resumeKey(file) {
  return `${RESUME_KEY_PREFIX}${state.token ? claims(state.token)?.sub : ""}:${file.name}:${file.size}:${file.lastModified}`;
}

async function sha256Base64(blob) {
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

async function partChecksums(file) {
  const checksums = [];
  for (let start = 0; start < file.size; start += PART_SIZE) {
    checksums.push(await sha256Base64(file.slice(start, start + PART_SIZE)));
  }
  return checksums;
}

function sendPart(part, file, partSize, onProgress) {
  return new Promise((resolve, reject) => {
    const start = (part.part_number - 1) * partSize;
    const request = new XMLHttpRequest();
    request.open("PUT", part.url);
    for (const [name, value] of Object.entries(part.headers)) {
      // The browser sets Content-Length itself (to the slice's length, the signed one).
      if (name.toLowerCase() !== "content-length") request.setRequestHeader(name, value);
    }
    request.upload.onprogress = (event) => onProgress(event.loaded);
    request.onload = () => (request.status === 200
      ? resolve()
      : reject(new Error(`S3 refused part ${part.part_number} (${request.status})`)));
    request.onerror = () => reject(new Error("S3 could not be reached"));
    request.send(file.slice(start, start + part.size));
  });
}

async function sendParts(ticket, file, row) {
  const sent = new Map();
  const already = (ticket.uploaded ?? []).reduce((total, part) => total + part.size, 0);
  const report = () => row.progress(
    (already + [...sent.values()].reduce((a, b) => a + b, 0)) / file.size);
  const queue = [...ticket.parts];
  const worker = async () => {
    for (let part = queue.shift(); part; part = queue.shift()) {
      await sendPart(part, file, ticket.part_size, (loaded) => { sent.set(part.part_number, loaded); report(); });
    }
  };
  await Promise.all(Array.from({ length: PARTS_AT_ONCE }, worker));
}

async function uploadInParts(file, tags, description, row) {
  const key = resumeKey(file);
  let ticket = null;
  const remembered = localStorage.getItem(key);
  if (remembered) {
    try {
      ticket = await api("GET", `/images/${remembered}/parts`);
      row.status("resuming");
      row.element.dataset.resumed = remembered;
    } catch {
      localStorage.removeItem(key);  // completed, deleted or expired: start again
    }
  }
  if (!ticket) {
    row.status("hashing");
    ticket = await api("POST", "/images/upload", {
      content_type: file.type || "application/octet-stream",
      method: "MULTIPART",
      size: file.size,
      part_size: PART_SIZE,
      part_checksums: await partChecksums(file),
      tags,
      description,
      filename: file.name,
    });
    localStorage.setItem(key, ticket.image_id);
  }
  row.element.dataset.imageId = ticket.image_id;
  row.status("uploading");
  await sendParts(ticket, file, row);
  row.status("verifying");
  await api("POST", `/images/${ticket.image_id}/complete`);
  localStorage.removeItem(key);
  return ticket.image_id;
}

async function uploadFile(file, tags, description) {
  const row = uploadRow(file.name);
  try {
    if (file.size > MULTIPART_THRESHOLD) {
      const imageId = await uploadInParts(file, tags, description, row);
      row.status("processing");
      row.status((await waitUntilProcessed(imageId)).status);
      return;
    }
    row.status("asking for a URL");
    const ticket = await api("POST", "/images/upload", {
      content_type: file.type || "application/octet-stream",
      method: "POST",
      tags,
      description,
      filename: file.name,
    });
    row.status("uploading");
    await sendToS3(ticket, file, row.progress);
    row.status("verifying");
    await api("POST", `/images/${ticket.image_id}/complete`);
    row.status("processing");
    const image = await waitUntilProcessed(ticket.image_id);
    row.status(image.status);
  } catch (error) {
    row.fail(error.message);
  }
}

async function importUrl(url) {
  if (!state.token) return showError(new Error("Paste or mint a token first."));
  showError(null);
  const row = uploadRow(url);
  try {
    row.status("asking");
    const image = await api("POST", "/images/import", {
      url,
      tags: splitTags($("tags").value),
      description: $("description").value,
    });
    row.status("fetching");
    const done = await waitUntilProcessed(image.image_id);
    if (done.status === "ready") row.status("ready");
    else row.fail(`${done.status}: ${done.reason || "no reason given"}`);
    await refreshGallery();  // an image was made, ready or refused
  } catch (error) {
    row.fail(error.message);
  }
}

async function uploadFiles(files) {
  if (!state.token) return showError(new Error("Paste or mint a token first."));
  showError(null);
  const tags = splitTags($("tags").value);
  const description = $("description").value;
  await Promise.all([...files].map((file) => uploadFile(file, tags, description)));
  await refreshGallery();
}

// -- the gallery -------------------------------------------------------------------------------

// A ThumbHash (base64) drawn as an image: the blurred preview shown until the thumbnail loads.
// The decoder of the reference algorithm (evanw/thumbhash), written out for this page.
function thumbHashToDataURL(encoded) {
  const hash = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
  const { PI, cos, max, min, round } = Math;
  const header24 = hash[0] | (hash[1] << 8) | (hash[2] << 16);
  const header16 = hash[3] | (hash[4] << 8);
  const lDc = (header24 & 63) / 63;
  const pDc = ((header24 >> 6) & 63) / 31.5 - 1;
  const qDc = ((header24 >> 12) & 63) / 31.5 - 1;
  const lScale = ((header24 >> 18) & 31) / 31;
  const hasAlpha = header24 >> 23;
  const pScale = ((header16 >> 3) & 63) / 63;
  const qScale = ((header16 >> 9) & 63) / 63;
  const isLandscape = header16 >> 15;
  const lx = max(3, isLandscape ? (hasAlpha ? 5 : 7) : header16 & 7);
  const ly = max(3, isLandscape ? header16 & 7 : hasAlpha ? 5 : 7);
  const aDc = hasAlpha ? (hash[5] & 15) / 15 : 1;
  const aScale = (hash[5] >> 4) / 15;
  const acStart = hasAlpha ? 6 : 5;
  let acIndex = 0;
  const decodeChannel = (nx, ny, scale) => {
    const ac = [];
    for (let cy = 0; cy < ny; cy++)
      for (let cx = cy ? 0 : 1; cx * ny < nx * (ny - cy); cx++, acIndex++)
        ac.push((((hash[acStart + (acIndex >> 1)] >> ((acIndex & 1) << 2)) & 15) / 7.5 - 1) * scale);
    return ac;
  };
  const lAc = decodeChannel(lx, ly, lScale);
  const pAc = decodeChannel(3, 3, pScale * 1.25);
  const qAc = decodeChannel(3, 3, qScale * 1.25);
  const aAc = hasAlpha ? decodeChannel(5, 5, aScale) : null;
  const ratio = (isLandscape ? (hasAlpha ? 5 : 7) : header16 & 7) / (isLandscape ? header16 & 7 : hasAlpha ? 5 : 7);
  const w = round(ratio > 1 ? 32 : 32 * ratio);
  const h = round(ratio > 1 ? 32 / ratio : 32);
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(w, h);
  const fx = [];
  const fy = [];
  for (let y = 0, i = 0; y < h; y++) {
    for (let x = 0; x < w; x++, i += 4) {
      let l = lDc, p = pDc, q = qDc, a = aDc;
      for (let cx = 0, n = max(lx, hasAlpha ? 5 : 3); cx < n; cx++) fx[cx] = cos((PI / w) * (x + 0.5) * cx);
      for (let cy = 0, n = max(ly, hasAlpha ? 5 : 3); cy < n; cy++) fy[cy] = cos((PI / h) * (y + 0.5) * cy);
      for (let cy = 0, j = 0; cy < ly; cy++)
        for (let cx = cy ? 0 : 1, fy2 = fy[cy] * 2; cx * ly < lx * (ly - cy); cx++, j++) l += lAc[j] * fx[cx] * fy2;
      for (let cy = 0, j = 0; cy < 3; cy++)
        for (let cx = cy ? 0 : 1, fy2 = fy[cy] * 2; cx < 3 - cy; cx++, j++) {
          const f = fx[cx] * fy2;
          p += pAc[j] * f;
          q += qAc[j] * f;
        }
      if (aAc)
        for (let cy = 0, j = 0; cy < 5; cy++)
          for (let cx = cy ? 0 : 1, fy2 = fy[cy] * 2; cx < 5 - cy; cx++, j++) a += aAc[j] * fx[cx] * fy2;
      const b = l - (2 / 3) * p;
      const r = (3 * l - b + q) / 2;
      const g = r - q;
      pixels.data[i] = max(0, 255 * min(1, r));
      pixels.data[i + 1] = max(0, 255 * min(1, g));
      pixels.data[i + 2] = max(0, 255 * min(1, b));
      pixels.data[i + 3] = max(0, 255 * min(1, a));
    }
  }
  context.putImageData(pixels, 0, 0);
  return canvas.toDataURL();
}

// The thumbnail as renditions of two sizes (the browser picks by its pixel density), each in
// the best format it takes (the service follows its Accept header).
async function showThumbnail(image, frame) {
  const urls = await Promise.all(
    [256, 512].map((side) =>
      api("GET", `/images/${image.image_id}/render?w=${side}&h=${side}&fit=cover`).then((r) => r.url),
    ),
  );
  const picture = element("img", {
    src: urls[0],
    srcset: `${urls[0]} 256w, ${urls[1]} 512w`,
    sizes: "160px",
    alt: image.filename || image.image_id,
  });
  frame.replaceChildren(picture);
}

function card(image) {
  const frame = element("div", { class: "thumb" }, image.status);
  if (image.placeholder) frame.style.background = image.placeholder;
  if (image.thumbhash) {
    frame.style.backgroundImage = `url(${thumbHashToDataURL(image.thumbhash)})`;
    frame.style.backgroundSize = "cover";
    frame.dataset.thumbhash = "shown";
  }
  const tags = element("div", { class: "tags" }, ...image.tags.map((tag) => element("span", {}, tag)));
  const remove = element("button", { type: "button", class: "delete" }, "Delete");
  const item = element(
    "li",
    { class: "card", dataset: { imageId: image.image_id, status: image.status } },
    frame,
    element(
      "div",
      { class: "meta" },
      element("div", {}, image.filename || image.image_id.slice(0, 8)),
      element("div", { class: `muted status-${image.status}` },
              `${image.status}${image.width ? ` · ${image.width}×${image.height}` : ""}`),
      image.description ? element("div", {}, image.description) : "",
      tags,
      remove,
    ),
  );
  remove.addEventListener("click", async () => {
    remove.disabled = true;
    try {
      await api("DELETE", `/images/${image.image_id}`);
      galleryGeneration += 1;  // a refresh asked before the delete must not bring it back
      item.remove();
      $("gallery-empty").hidden = $("gallery").children.length > 0;
    } catch (error) {
      remove.disabled = false;
      showError(error);
    }
  });
  if (image.status === "ready") showThumbnail(image, frame).catch(showError);
  return item;
}

// Each refresh has a number; only the latest may fill the gallery. Events come in bursts from
// every replica, and a refresh whose answer arrives after a later one's must not add its cards
// beside them.
let galleryGeneration = 0;

async function fetchPage(cursor) {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (cursor) query.set("cursor", cursor);
  return api("GET", `/images?${query}`);
}

function showPage(page, { replace }) {
  const cards = page.items.map(card);
  if (replace) $("gallery").replaceChildren(...cards);
  else $("gallery").append(...cards);
  state.cursor = page.next_cursor;
  $("more").hidden = !state.cursor;
  $("gallery-empty").hidden = $("gallery").children.length > 0;
}

async function loadPage() {
  const generation = galleryGeneration;
  const page = await fetchPage(state.cursor);
  if (generation === galleryGeneration) showPage(page, { replace: false });
}

async function refreshGallery() {
  const generation = ++galleryGeneration;
  try {
    const page = await fetchPage(null);
    if (generation !== galleryGeneration) return;  // a later refresh fills the gallery
    showPage(page, { replace: true });
    document.body.dataset.galleryLoaded = "true";
  } catch (error) {
    showError(error);
  }
}

// -- albums and share links ---------------------------------------------------------------------

function albumRow(album) {
  const share = element("button", { type: "button", class: "share" }, "Share for 7 days");
  const link = element("input", { type: "text", readonly: "", class: "share-link", hidden: "" });
  const copy = element("button", { type: "button", class: "copy", hidden: "" }, "Copy link");
  const row = element("li", { dataset: { albumId: album.album_id } },
                      element("span", {}, album.name), " ", share, link, copy);
  share.addEventListener("click", async () => {
    share.disabled = true;
    try {
      // The link is shown once, here: the service keeps only a hash of it.
      const made = await api("POST", "/shares", { album_id: album.album_id, ttl: 7 * 86400 });
      link.value = made.url;
      link.hidden = copy.hidden = false;
      row.dataset.shared = "true";
    } catch (error) {
      showError(error);
    } finally {
      share.disabled = false;
    }
  });
  copy.addEventListener("click", async () => {
    link.select();
    await navigator.clipboard?.writeText(link.value).catch(() => {});
    copy.textContent = "Copied";
  });
  return row;
}

async function refreshAlbums() {
  const albums = await api("GET", "/albums");
  $("albums").replaceChildren(...albums.items.map(albumRow));
}

async function makeAlbum(name) {
  const shown = [...document.querySelectorAll("#gallery li.card")]
    .map((card) => card.dataset.imageId);
  const album = await api("POST", "/albums", { name });
  for (let start = 0; start < shown.length; start += 100) {
    await api("PUT", `/albums/${album.album_id}/images`,
              { image_ids: shown.slice(start, start + 100) });
  }
  await refreshAlbums();
}

// -- wiring ------------------------------------------------------------------------------------

function wire() {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    useToken($("token").value);
  });
  const mint = $("mint-token");
  mint.hidden = document.body.dataset.devTokens !== "true";
  mint.addEventListener("click", () => mintToken().catch(showError));

  $("files").addEventListener("change", (event) => {
    uploadFiles(event.target.files);
    event.target.value = "";
  });
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    uploadFiles(event.dataTransfer.files);
  });
  $("import-form").addEventListener("submit", (event) => {
    event.preventDefault();
    importUrl($("import-url").value).catch(showError);
    $("import-url").value = "";
  });
  $("refresh").addEventListener("click", refreshGallery);
  $("album-form").addEventListener("submit", (event) => {
    event.preventDefault();
    makeAlbum($("album-name").value).catch(showError);
  });
  $("more").addEventListener("click", () => loadPage().catch(showError));
  if (state.token) useToken(state.token);
}

wire();
