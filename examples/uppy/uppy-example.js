// Uppy's AWS S3 plugin on image_service's multipart uploads. Each hook is one API call:
//
//   createMultipartUpload   POST   /images/upload  {"method": "MULTIPART", size, part_size, part_checksums}
//   listParts               GET    /images/{id}/parts   (what S3 holds; fresh URLs for the rest)
//   signPart                the part's URL from either answer above (asked again once expired)
//   completeMultipartUpload POST   /images/{id}/complete (the service assembles and verifies)
//   abortMultipartUpload    DELETE /images/{id}
//
// The API and token come from the fields, or from the URL's fragment (#api=...&token=...),
// which never leaves the browser.

import { AwsS3, Dashboard, Uppy } from "./vendor/uppy.min.mjs";

const PART_SIZE = 8 * 1024 * 1024;  // Uppy cuts the file the same way the API does
const READY_WAIT_MS = 60_000;

const $ = (id) => document.getElementById(id);
const fragment = new URLSearchParams(location.hash.slice(1));
$("api").value = fragment.get("api") ?? "http://127.0.0.1:8080";
$("token").value = fragment.get("token") ?? "";

async function api(method, path, body) {
  const response = await fetch($("api").value.replace(/\/$/, "") + path, {
    method,
    headers: {
      Authorization: `Bearer ${$("token").value.trim()}`,
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const answer = await response.json();
  if (!response.ok) throw new Error(`${answer.error.code}: ${answer.error.message}`);
  return answer;
}

async function sha256Base64(blob) {
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

// image id -> part number -> {url, headers, expires}
const signed = new Map();

function remember(imageId, parts, expiresAt) {
  const byNumber = signed.get(imageId) ?? new Map();
  const expires = Date.parse(expiresAt) - 10_000;  // a margin for the clock and the send
  for (const part of parts) byNumber.set(part.part_number, { ...part, expires });
  signed.set(imageId, byNumber);
}

async function refresh(imageId) {
  const progress = await api("GET", `/images/${imageId}/parts`);
  remember(imageId, progress.parts, progress.expires_at);
  return progress;
}

const uppy = new Uppy({ restrictions: { allowedFileTypes: ["image/*"] } })
  .use(Dashboard, { inline: true, target: "#uppy", height: 380, proudlyDisplayPoweredByUppy: false })
  .use(AwsS3, {
    shouldUseMultipart: () => true,
    getChunkSize: () => PART_SIZE,

    async createMultipartUpload(file) {
      const checksums = [];
      for (let start = 0; start < file.size; start += PART_SIZE) {
        checksums.push(await sha256Base64(file.data.slice(start, start + PART_SIZE)));
      }
      const ticket = await api("POST", "/images/upload", {
        content_type: file.type,
        method: "MULTIPART",
        size: file.size,
        part_size: PART_SIZE,
        part_checksums: checksums,
        filename: file.name,
      });
      remember(ticket.image_id, ticket.parts, ticket.expires_at);
      // Uppy's "key" is opaque to it: here it is the image id every other call names.
      return { uploadId: ticket.upload_id, key: ticket.image_id };
    },

    async listParts(file, { key }) {
      const progress = await refresh(key);
      return progress.uploaded.map((part) => ({
        PartNumber: part.part_number, Size: part.size, ETag: part.etag,
      }));
    },

    async signPart(file, { key, partNumber }) {
      let part = signed.get(key)?.get(partNumber);
      if (!part || part.expires <= Date.now()) {
        await refresh(key);
        part = signed.get(key).get(partNumber);
      }
      // The browser sets Content-Length itself, to the chunk's (signed) length.
      const headers = Object.fromEntries(
        Object.entries(part.headers).filter(([name]) => name.toLowerCase() !== "content-length"));
      return { url: part.url, headers };
    },

    async completeMultipartUpload(file, { key }) {
      await api("POST", `/images/${key}/complete`);
      return { location: `${$("api").value.replace(/\/$/, "")}/images/${key}` };
    },

    async abortMultipartUpload(file, { key }) {
      await api("DELETE", `/images/${key}`);
    },
  });

async function untilProcessed(imageId) {
  const deadline = Date.now() + READY_WAIT_MS;
  for (;;) {
    const image = await api("GET", `/images/${imageId}`);
    if (image.status !== "pending" && image.status !== "processing") return image;
    if (Date.now() > deadline) throw new Error("still processing");
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

uppy.on("upload-success", async (file) => {
  const imageId = file.s3Multipart.key;
  const row = document.createElement("li");
  row.dataset.imageId = imageId;
  row.textContent = `${file.name}: processing`;
  $("results").append(row);
  try {
    const image = await untilProcessed(imageId);
    row.dataset.status = image.status;
    row.textContent = `${file.name}: ${image.status} (${image.width}×${image.height}, ${imageId})`;
  } catch (error) {
    row.dataset.status = "failed";
    row.textContent = `${file.name}: ${error.message}`;
  }
});

uppy.on("upload-error", (file, error) => {
  const row = document.createElement("li");
  row.dataset.status = "failed";
  row.textContent = `${file.name}: ${error.message}`;
  $("results").append(row);
});
