// End-to-end: the console in a real headless Chromium against a real
// `aerie serve`, and a real MQTT device (MQTT.js over TCP) beside it.
//
//   CONSOLE_URL      the console (the control plane's HTTP listener)
//   MQTT_URL         the broker's MQTT/TCP endpoint, for the device
//   BROKER_ORIGINS   comma-separated origins the page may reach besides CONSOLE_URL
//   SCREENSHOT_DIR   where the page screenshots go (default test-output/screenshots)
//
// Run by tests/tests/console.rs (`make test`), which boots the server.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { chromium } from 'playwright-core';
import mqtt from 'mqtt';

const CONSOLE_URL = process.env.CONSOLE_URL ?? 'http://127.0.0.1:8080';
const MQTT_URL = process.env.MQTT_URL ?? 'mqtt://127.0.0.1:1883';
const ALLOWED = new Set([
  new URL(CONSOLE_URL).origin,
  ...(process.env.BROKER_ORIGINS ?? '').split(',').filter(Boolean).map((o) => new URL(o).origin),
]);
const SHOTS = process.env.SCREENSHOT_DIR ?? 'test-output/screenshots';
const PASSWORD = 'correct horse battery staple';
const TIMEOUT = 15_000;

let browser;
/** Every URL any page asked for, and every problem a page reported. */
const requested = [];
const pageProblems = [];

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});

after(async () => {
  await browser?.close();
});

async function newPage({ width = 1280, height = 900, bypassCSP = false } = {}) {
  const context = await browser.newContext({ viewport: { width, height }, bypassCSP });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(CONSOLE_URL).origin });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('request', (r) => requested.push(r.url()));
  page.on('websocket', (ws) => requested.push(ws.url()));
  page.on('pageerror', (e) => pageProblems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // A CSP violation means the console relies on something the policy forbids.
    if (!bypassCSP && m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) {
      pageProblems.push(m.text());
    }
  });
  return { context, page };
}

const unique = (what) => `${what}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}@example.com`;

async function signUp(page, email) {
  await page.goto(`${CONSOLE_URL}/signup`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('heading', { name: 'Tenants', exact: true }).waitFor();
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** Runs `command` until its output has `line` (then stops it); resolves to the output. */
function runUntil(command, args, line, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: process.cwd() });
    let output = '';
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`${command} did not print ${JSON.stringify(line)} within ${ms} ms:\n${output}`));
    }, ms);
    const read = (chunk) => {
      output += chunk;
      if (output.includes(line)) {
        clearTimeout(timer);
        child.kill();
        resolve(output);
      }
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
  });
}

/** Connects a device with `token`; resolves once connected. */
function device(token, clientId) {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(MQTT_URL, {
      protocolVersion: 5,
      clientId,
      username: 'device',
      password: token,
      reconnectPeriod: 0,
      connectTimeout: 5000,
    });
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  });
}

test('sign up, provision, talk MQTT from the browser, and revoke a device', async () => {
  const { context, page } = await newPage();
  const email = unique('owner');

  // Sign-up page, before and after.
  await page.goto(`${CONSOLE_URL}/signup`);
  await page.getByRole('heading', { name: 'Create your Aerie account' }).waitFor();
  await shot(page, 'sign-up');
  await signUp(page, email);
  await page.getByText('No tenants yet').waitFor();

  // A tenant.
  await page.getByLabel('New tenant name').fill('Greenhouse sensors');
  await page.getByRole('button', { name: 'Create tenant' }).click();
  await page.getByTestId('tenant-name').filter({ hasText: 'Greenhouse sensors' }).waitFor();
  const tid = new URL(page.url()).pathname.split('/')[2];
  assert.match(tid, /^[a-z0-9]{10}$/);
  const wsEndpoint = await page.getByTestId('endpoint-ws').textContent();
  assert.match(wsEndpoint, /^ws:\/\/.+\/mqtt$/);

  // An API key: shown once, with a working copy button.
  await page.getByRole('link', { name: 'API keys' }).click();
  await page.getByLabel('Key name').fill('provisioning');
  await page.getByRole('button', { name: 'Create API key' }).click();
  const key = await page.getByTestId('new-api-key').textContent();
  assert.ok(key.length > 20, `an API key, got ${key}`);
  await page.locator('.secret').getByRole('button', { name: 'Copy' }).click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), key);
  await page.getByTestId('api-keys-table').getByText('provisioning').waitFor();
  await shot(page, 'api-keys');

  // A device token, minted in the console; a device connects with it.
  await page.getByRole('link', { name: 'Tokens' }).click();
  await page.getByLabel('Client id (optional)').fill('sensor-1');
  await page.getByRole('button', { name: 'Mint token' }).click();
  const token = await page.getByTestId('minted-token').textContent();
  const jti = await page.getByTestId('minted-jti').textContent();
  await page.locator(`tr[data-key="${jti}"]`).waitFor();
  await shot(page, 'tokens');
  const sensor = await device(token, 'sensor-1');
  const closed = new Promise((resolve) => {
    let reason;
    sensor.on('disconnect', (packet) => (reason = packet.reasonCode));
    sensor.on('close', () => resolve(reason));
  });

  // "Connect a device": the mosquitto snippet, run as shown, reaches the device.
  await page.getByRole('link', { name: 'Connect a device' }).click();
  await page.getByRole('button', { name: 'Mint a token and show the snippets' }).click();
  const snippet = await page.getByTestId('snippet-mosquitto').textContent();
  const heard = new Promise((resolve) => sensor.on('message', (topic, payload) => resolve(`${topic} ${payload}`)));
  await new Promise((resolve, reject) => sensor.subscribe('demo/#', { qos: 1 }, (e) => (e ? reject(e) : resolve())));
  const publish = snippet.split('\n').filter((line) => line.startsWith('TOKEN=') || line.startsWith('mosquitto_pub '));
  assert.equal(publish.length, 2, snippet);
  execFileSync('bash', ['-euc', publish.join('\n')], { timeout: 10_000 });
  assert.equal(await heard, 'demo/hello hello from mosquitto_pub');
  // A second device, on the snippets' token (bound to no client id).
  const snippetToken = /^TOKEN='(.+)'$/.exec(publish[0])[1];
  const second = await device(snippetToken, 'device-2');
  const secondClosed = new Promise((resolve) => second.on('disconnect', (packet) => resolve(packet.reasonCode)));
  // The Python and MQTT.js snippets, run as shown, connect, subscribe and
  // hear their own message.
  await page.getByRole('tab', { name: 'Python (paho-mqtt 2)' }).click();
  const paho = await page.getByTestId('snippet-paho').textContent();
  assert.match(await runUntil('python3', ['-u', '-c', paho], 'demo/hello hello from paho'), /connected: Success/);
  await shot(page, 'connect-a-device');
  await page.getByRole('tab', { name: 'MQTT.js (browser or Node.js)' }).click();
  const mqttjs = join(SHOTS, '..', 'snippet.mjs');
  writeFileSync(mqttjs, await page.getByTestId('snippet-mqttjs').textContent());
  await runUntil('node', [mqttjs], 'demo/hello hello from MQTT.js');

  // The live client: subscribe demo/#, publish, the message shows in the log.
  await page.getByRole('link', { name: 'Live client' }).click();
  await page.getByRole('button', { name: 'Connect', exact: true }).click();
  await page.getByTestId('connection-state').getByText('Connected', { exact: true }).waitFor();
  await page.getByLabel('Topic filter').fill('demo/#');
  await page.getByRole('button', { name: 'Subscribe', exact: true }).click();
  await page.getByRole('list', { name: 'Subscriptions' }).getByText('demo/#').waitFor();
  await page.getByLabel('Topic', { exact: true }).fill('demo/greenhouse/1');
  await page.getByLabel('Payload').fill('{"temperature": 21.5, "humidity": 40}');
  await page.getByRole('button', { name: 'Publish', exact: true }).click();
  const received = page.getByTestId('message-log').locator('li.log-in').filter({ hasText: 'demo/greenhouse/1' });
  await received.waitFor();
  assert.match(await received.locator('pre').textContent(), /"temperature": 21\.5,\n\s+"humidity": 40/);
  // The device's messages arrive too.
  sensor.publish('demo/sensor-1', 'hello from the device', { qos: 1 });
  await page.getByTestId('message-log').locator('li.log-in').filter({ hasText: 'hello from the device' }).waitFor();
  // The log's filter narrows what is shown.
  await page.getByLabel('Show topics matching').fill('demo/greenhouse/#');
  await page.getByTestId('message-log').getByText('hello from the device').waitFor({ state: 'detached' });
  await received.waitFor();
  await page.getByLabel('Show topics matching').fill('');
  await shot(page, 'live-client');

  // A refusal shows with its reason code: the API key, used from a script,
  // disconnects the browser's client (DISCONNECT 0x98).
  const browserClient = await page.getByLabel('Client id').inputValue();
  const kicked = await fetch(`${CONSOLE_URL}/v1/tenants/${tid}/clients/${browserClient}`, {
    method: 'DELETE',
    headers: { Authorization: `Bearer ${key}` },
  });
  assert.equal(kicked.status, 204);
  await page
    .getByTestId('connection-state')
    .getByText('Disconnected by the broker: 0x98 Administrative action (admin_disconnect)')
    .waitFor();

  // The connected clients table lists the device, and no longer the browser.
  await page.getByRole('link', { name: 'Connected clients' }).click();
  await page.getByTestId('clients-table').getByText('sensor-1').waitFor();
  assert.equal(await page.getByTestId('clients-table').getByText(browserClient).count(), 0);
  await shot(page, 'clients');
  // Disconnecting a client in the table closes it with 0x98.
  await page.getByRole('button', { name: 'Disconnect device-2' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Disconnect' }).click();
  assert.equal(await secondClosed, 0x98);
  await page.getByTestId('clients-table').getByText('device-2').waitFor({ state: 'detached' });

  // An issuer of the tenant's own: a bad key is an error beside its field,
  // a P-256 public key is registered.
  await page.getByRole('link', { name: 'Issuers' }).click();
  await page.getByText('No issuers of your own').waitFor();
  await page.getByLabel('Issuer (the tokens\' iss)').fill('https://auth.example.com/');
  await page.getByLabel('Keys from').selectOption('public_key_pem');
  await page.getByLabel('Public key (PEM)').fill('not a key');
  await page.getByRole('button', { name: 'Register issuer' }).click();
  await page.locator('.field-invalid').getByText('public_key_pem is not a PEM document.').waitFor();
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  await page.getByLabel('Public key (PEM)').fill(publicKey.export({ type: 'spki', format: 'pem' }));
  await page.getByRole('button', { name: 'Register issuer' }).click();
  await page.getByRole('table').getByText('https://auth.example.com/').waitFor();
  assert.equal(await page.locator('.field-invalid').count(), 0);
  await shot(page, 'issuers');

  // Revoking the token in the console disconnects the device (0x87).
  await page.getByRole('link', { name: 'Tokens' }).click();
  await page.getByRole('button', { name: `Revoke token ${jti}` }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
  await page.locator(`tr[data-key="${jti}"]`).getByText('revoked').waitFor();
  const reason = await Promise.race([closed, new Promise((r) => setTimeout(() => r('still connected'), 5000))]);
  assert.equal(reason, 0x87, 'the device is disconnected with 0x87 Not authorized');

  // The overview shows the usage as charts once the broker has written it.
  await page.getByRole('link', { name: 'Overview' }).click();
  await page.getByTestId('usage-chart').first().locator('canvas').waitFor();
  const deadline = Date.now() + TIMEOUT;
  while (!/[1-9]/.test((await page.getByTestId('usage-totals').locator('dd').nth(1).textContent()) ?? '')) {
    assert.ok(Date.now() < deadline, 'usage reached the overview');
    await page.waitForTimeout(500);
    await page.getByRole('button', { name: 'Refresh' }).click();
  }
  assert.equal(await page.getByTestId('usage-chart').count(), 3);
  await shot(page, 'tenant-overview');

  // Phone width: the overview still fits.
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no horizontal scrolling at phone width (overflow ${overflow}px)`);
  await shot(page, 'tenant-overview-phone');
  await page.setViewportSize({ width: 1280, height: 900 });

  // The session token is in no URL and in no storage a script can read: it
  // is in an HttpOnly, SameSite=Strict cookie.
  const storage = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie);
  assert.equal(storage, '{}{}');
  const [cookie, ...others] = await context.cookies();
  assert.deepEqual(others, []);
  assert.equal(cookie.name, 'aerie_session');
  assert.ok(cookie.httpOnly && cookie.sameSite === 'Strict' && cookie.path === '/', JSON.stringify(cookie));
  assert.ok(!requested.some((u) => u.includes(cookie.value)), 'the session token is in no URL');

  // A second account, in its own browser context, cannot see the tenant.
  const stranger = await newPage();
  const strangerEmail = unique('stranger');
  await signUp(stranger.page, strangerEmail);
  await stranger.page.getByText('No tenants yet').waitFor();
  // Opening the first tenant's address loads the page anew; the session
  // cookie keeps the stranger signed in, and the tenant is not theirs.
  await stranger.page.goto(`${CONSOLE_URL}/tenants/${tid}`);
  await stranger.page.getByRole('alert').getByText('Tenant not found.').waitFor();
  assert.equal(await stranger.page.getByTestId('account-email').textContent(), strangerEmail);
  assert.equal(await stranger.page.getByText('Greenhouse sensors').count(), 0);
  assert.equal(new URL(stranger.page.url()).pathname, `/tenants/${tid}`);
  await stranger.context.close();

  // Revoking the API key in the console: the script's next call gets 401.
  await page.getByRole('link', { name: 'API keys' }).click();
  await page.getByRole('button', { name: 'Revoke API key provisioning' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
  await page.getByText('No API keys yet.').waitFor();
  const refused = await fetch(`${CONSOLE_URL}/v1/tenants/${tid}/clients`, { headers: { Authorization: `Bearer ${key}` } });
  assert.equal(refused.status, 401);

  // An account API key: shown once, with how to use it; a script sees the
  // account's tenants with it until it is deleted in the console.
  await page.getByRole('navigation', { name: 'Account' }).getByRole('link', { name: 'Account keys' }).click();
  await page.getByRole('heading', { name: 'Account API keys' }).waitFor();
  await page.getByLabel('Key name').fill('terraform');
  await page.getByRole('button', { name: 'Create API key' }).click();
  const accountKey = await page.getByTestId('new-account-key').textContent();
  assert.match(accountKey, /^aerie_acct_[A-Za-z0-9]{32}$/);
  assert.ok((await page.getByTestId('account-key-usage').textContent()).includes(`AERIE_TOKEN='${accountKey}'`));
  await page.getByTestId('account-keys-table').getByText('terraform').waitFor();
  await shot(page, 'account-keys');
  const asAccount = { headers: { Authorization: `Bearer ${accountKey}` } };
  const seen = await fetch(`${CONSOLE_URL}/v1/tenants`, asAccount);
  assert.equal(seen.status, 200);
  assert.ok((await seen.json()).some((t) => t.id === tid));
  await page.getByRole('button', { name: 'Delete API key terraform' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await page.getByText('No API keys yet.').waitFor();
  assert.equal((await fetch(`${CONSOLE_URL}/v1/tenants`, asAccount)).status, 401);

  // Another tenant: renamed, then deleted after typing its name.
  await page.getByRole('navigation', { name: 'Account' }).getByRole('link', { name: 'Tenants' }).click();
  await page.getByLabel('New tenant name').fill('Scratch');
  await page.getByRole('button', { name: 'Create tenant' }).click();
  await page.getByTestId('tenant-name').filter({ hasText: 'Scratch' }).waitFor();
  await page.getByLabel('Tenant name').fill('Scratch 2');
  await page.getByRole('button', { name: 'Rename' }).click();
  await page.getByTestId('tenant-name').filter({ hasText: 'Scratch 2' }).waitFor();
  await page.getByRole('button', { name: 'Delete tenant' }).click();
  const confirm = page.getByRole('dialog');
  assert.ok(await confirm.getByRole('button', { name: 'Delete for good' }).isDisabled());
  await confirm.getByLabel('Type “Scratch 2” to confirm').fill('Scratch 2');
  await confirm.getByRole('button', { name: 'Delete for good' }).click();
  await page.getByRole('heading', { name: 'Tenants', exact: true }).waitFor();
  await page.getByRole('table').getByText('Greenhouse sensors').waitFor();
  assert.equal(await page.getByRole('table').getByText('Scratch 2').count(), 0);
  await shot(page, 'tenants');

  // A wrong password is an error next to the form, and no session. The form
  // is submitted from the keyboard.
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill('not the password');
  await page.getByLabel('Password').press('Enter');
  await page.getByRole('alert').getByText('Wrong email or password.').waitFor();
  assert.equal(await page.getByRole('button', { name: 'Log out' }).count(), 0);
  await shot(page, 'log-in-refused');

  sensor.end(true);
  await context.close();
});

test('a reload of every page keeps the person signed in; log out ends the session for good', async () => {
  const { context, page } = await newPage();
  const email = unique('reload');
  await signUp(page, email);
  await page.getByLabel('New tenant name').fill('Reloaded');
  await page.getByRole('button', { name: 'Create tenant' }).click();
  await page.getByTestId('tenant-name').filter({ hasText: 'Reloaded' }).waitFor();
  const tid = new URL(page.url()).pathname.split('/')[2];
  // No TLS listener runs here: the overview names none, and says so.
  await page.getByTestId('no-tls').waitFor();
  assert.equal(await page.getByTestId('endpoint-mqtts').count(), 0);
  assert.equal(await page.getByTestId('endpoint-wss').count(), 0);

  const pages = [
    ['/', () => page.getByRole('heading', { name: 'Tenants', exact: true })],
    ['/tenants', () => page.getByRole('heading', { name: 'Tenants', exact: true })],
    ['/account/api-keys', () => page.getByRole('heading', { name: 'Account API keys' })],
    [`/tenants/${tid}`, () => page.getByTestId('usage-chart').first().locator('canvas')],
    [`/tenants/${tid}/live`, () => page.getByRole('button', { name: 'Connect', exact: true })],
    [`/tenants/${tid}/clients`, () => page.getByText('No client is connected')],
    [`/tenants/${tid}/connect`, () => page.getByRole('button', { name: 'Mint a token and show the snippets' })],
    [`/tenants/${tid}/tokens`, () => page.getByText('No tokens minted yet.')],
    [`/tenants/${tid}/api-keys`, () => page.getByText('No API keys yet.')],
    [`/tenants/${tid}/issuers`, () => page.getByText('No issuers of your own')],
  ];
  for (const [path, ready] of pages) {
    await page.goto(`${CONSOLE_URL}${path}`);
    await ready().waitFor();
    await page.reload();
    await ready().waitFor();
    assert.equal(await page.getByTestId('account-email').textContent(), email, `signed in after reloading ${path}`);
    assert.equal(await page.getByText('Log in to continue.').count(), 0, path);
  }
  // A write after a reload carries the restored CSRF token.
  await page.goto(`${CONSOLE_URL}/tenants/${tid}/api-keys`);
  await page.reload();
  await page.getByLabel('Key name').fill('after reload');
  await page.getByRole('button', { name: 'Create API key' }).click();
  await page.getByTestId('new-api-key').waitFor();

  // Log out ends the session on the server: the old cookie, sent again by
  // hand, is refused, and a reload asks to log in.
  const [cookie] = await context.cookies();
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByRole('heading', { name: 'Log in to Aerie' }).waitFor();
  assert.deepEqual(await context.cookies(), []);
  const replayed = await fetch(`${CONSOLE_URL}/v1/account`, { headers: { Cookie: `${cookie.name}=${cookie.value}` } });
  assert.equal(replayed.status, 401);
  await page.goto(`${CONSOLE_URL}/tenants/${tid}`);
  await page.getByText('Log in to continue.').waitFor();
  await context.close();
});

const AXE = fileURLToPath(import.meta.resolve('axe-core/axe.min.js'));

/** axe-core's WCAG 2 A/AA violations of what `page` shows now. */
async function accessibilityViolations(page) {
  await page.addScriptTag({ path: AXE });
  const result = await page.evaluate(() =>
    axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }),
  );
  return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

test('every page passes an axe-core WCAG 2.1 A/AA audit', async () => {
  // axe is injected as a script: this context alone lets it past the CSP.
  const { context, page } = await newPage({ bypassCSP: true });
  const found = {};
  const audit = async (name) => {
    const violations = await accessibilityViolations(page);
    if (violations.length) found[name] = violations;
  };
  await page.goto(`${CONSOLE_URL}/signup`);
  await page.getByRole('heading', { name: 'Create your Aerie account' }).waitFor();
  await audit('sign-up');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('alert').waitFor();
  await audit('sign-up with an error');
  await signUp(page, unique('audit'));
  await page.getByText('No tenants yet').waitFor();
  await audit('tenants, empty');
  await page.getByRole('navigation', { name: 'Account' }).getByRole('link', { name: 'Account keys' }).click();
  await page.getByText('No API keys yet.').waitFor();
  await audit('account API keys');
  await page.getByRole('navigation', { name: 'Account' }).getByRole('link', { name: 'Tenants' }).click();
  await page.getByText('No tenants yet').waitFor();
  await page.getByLabel('New tenant name').fill('Audit');
  await page.getByRole('button', { name: 'Create tenant' }).click();
  await page.getByTestId('usage-chart').first().locator('canvas').waitFor();
  await audit('overview');
  for (const [tab, ready] of [
    ['Live client', () => page.getByRole('button', { name: 'Connect', exact: true })],
    ['Connected clients', () => page.getByText('No client is connected')],
    ['Connect a device', () => page.getByRole('button', { name: 'Mint a token and show the snippets' })],
    ['Tokens', () => page.getByText('No tokens minted yet.')],
    ['API keys', () => page.getByText('No API keys yet.')],
    ['Issuers', () => page.getByText('No issuers of your own')],
  ]) {
    await page.getByRole('navigation', { name: 'Tenant' }).getByRole('link', { name: tab }).click();
    await ready().waitFor();
    await audit(tab);
  }
  await page.getByRole('navigation', { name: 'Tenant' }).getByRole('link', { name: 'Live client' }).click();
  await page.getByRole('button', { name: 'Connect', exact: true }).click();
  await page.getByTestId('connection-state').getByText('Connected', { exact: true }).waitFor();
  await page.getByRole('button', { name: 'Subscribe', exact: true }).click();
  await page.getByRole('list', { name: 'Subscriptions' }).waitFor();
  await page.getByRole('button', { name: 'Publish', exact: true }).click();
  await page.getByTestId('message-log').locator('li.log-in').waitFor();
  await audit('live client, connected, with messages');
  await page.getByRole('navigation', { name: 'Tenant' }).getByRole('link', { name: 'Connect a device' }).click();
  await page.getByRole('button', { name: 'Mint a token and show the snippets' }).click();
  await page.getByTestId('snippet-mosquitto').waitFor();
  await audit('connect a device, with snippets');
  await page.getByRole('navigation', { name: 'Tenant' }).getByRole('link', { name: 'Overview' }).click();
  await page.getByRole('button', { name: 'Delete tenant' }).click();
  await page.getByRole('dialog').waitFor();
  await audit('delete confirmation');
  await context.close();
  assert.deepEqual(found, {});
});

test('no request leaves for anywhere but the control plane and the broker', () => {
  assert.ok(requested.length > 10, `requests were recorded (${requested.length})`);
  const elsewhere = requested.filter((u) => !u.startsWith('data:') && !ALLOWED.has(new URL(u).origin));
  assert.deepEqual(elsewhere, [], `allowed: ${[...ALLOWED].join(', ')}`);
  assert.deepEqual(pageProblems, []);
});
