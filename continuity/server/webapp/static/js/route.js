// Addresses inside the app: #/<page>/<library>/<more>?<query>
export function parseHash() {
  const [path, search] = location.hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { page: parts[0] || "", params: parts.slice(1), query: new URLSearchParams(search || "") };
}

export const href = (page, ...params) => "#/" + [page, ...params.map(encodeURIComponent)].join("/");
