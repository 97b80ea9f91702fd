// After `vite build`: a Brotli and a gzip copy of every text asset, next to
// it in dist/, so the gateway sends them compressed to browsers that accept
// it without compressing on every request. Node's zlib writes the same
// bytes for the same input (no timestamps), so CI's rebuild compares equal.
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const dist = new URL("../dist/", import.meta.url).pathname;
const text = /\.(js|css|html|svg|json)$/;

function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (text.test(name)) {
      const body = readFileSync(path);
      const br = brotliCompressSync(body, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } });
      const gz = gzipSync(body, { level: 9 });
      // Only where it saves something worth a header.
      if (br.length < body.length * 0.9) writeFileSync(`${path}.br`, br);
      if (gz.length < body.length * 0.9) writeFileSync(`${path}.gz`, gz);
    }
  }
}
walk(dist);
