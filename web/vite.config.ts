/// <reference types="vitest/config" />
import { defineConfig } from 'vite';

// `npm run dev` serves the console with hot reload and sends the API to a
// running `aerie serve` (AERIE_URL, default http://127.0.0.1:8080).
const api = process.env.AERIE_URL ?? 'http://127.0.0.1:8080';
const proxy = Object.fromEntries(['/v1', '/.well-known'].map((path) => [path, api]));

export default defineConfig({
  server: { proxy },
  preview: { proxy },
  // Preact's automatic JSX runtime, without a framework plugin: Vite's own
  // transform is enough, and keeps the tool chain small.
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    target: 'es2022',
    // The live client (MQTT.js) and the charts (uPlot) are split into their
    // own chunks and load only on the pages that use them.
    chunkSizeWarningLimit: 400,
  },
  test: {
    include: ['src/**/*.test.ts'],
  },
});
