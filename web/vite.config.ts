import { defineConfig } from "vite";

// The build is committed (web/dist) and embedded in the panal binary, so a
// machine with only the Rust toolchain serves the app. Hashed file names let
// the gateway cache assets for a year; index.html is never cached.
export default defineConfig({
  build: {
    outDir: "dist",
    assetsDir: "assets",
    emptyOutDir: true,
    // No inline scripts or data: URLs for modules: the CSP allows 'self' only.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
  },
  server: {
    // `npm run dev` next to `panal up`: API calls go to the gateway.
    proxy: { "/v1": { target: "http://127.0.0.1:8000", ws: true } },
  },
});
