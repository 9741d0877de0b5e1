// Passkeys in a real browser. Chromium with a virtual platform authenticator
// (the DevTools protocol's WebAuthn domain: CTAP2, resident keys, user
// verification) signs in to a running `consentry serve` the way a web page
// would: options from the server through
// `PublicKeyCredential.parseCreationOptionsFromJSON` / `parseRequestOptionsFromJSON`,
// the browser's `credential.toJSON()` back to the server.
//
// node passkeys.mjs ORIGIN EMAIL PASSWORD   (ORIGIN: http://localhost:PORT)

import { chromium } from 'playwright-core';

const [origin, email, password] = process.argv.slice(2);
if (!origin || !email || !password) {
  console.error('usage: node passkeys.mjs ORIGIN EMAIL PASSWORD');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
let failed = false;
try {
  const page = await browser.newPage();
  await page.goto(`${origin}/healthz`);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });

  const seen = await page.evaluate(
    async ({ email, password }) => {
      const read = async (what, response) => {
        const text = await response.text();
        if (!response.ok) throw new Error(`${what}: ${response.status} ${text}`);
        return text ? JSON.parse(text) : {};
      };
      const post = (path, body, csrf) =>
        fetch(path, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(csrf ? { 'x-consentry-csrf': csrf } : {}) },
          body: JSON.stringify(body ?? {}),
        });
      const out = {};
      const step = async (what, promise) => {
        try {
          return await promise;
        } catch (e) {
          throw new Error(`${what}: ${e.name}: ${e.message}`);
        }
      };

      // Password sign-in, then register the browser's passkey.
      const signed = await read('sign-in', await post('/api/v1/auth/login', { email, password }));
      const started = await read('registration options', await post('/api/v1/auth/factors/passkeys', {}, signed.csrf_token));
      const created = await step(
        'navigator.credentials.create',
        navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(started.options.publicKey) }),
      );
      const enrolled = await read(
        'registration',
        await post(
          '/api/v1/auth/factors/passkeys/confirm',
          { ceremony_id: started.ceremony_id, name: 'Chromium', credential: created.toJSON() },
          signed.csrf_token,
        ),
      );
      out.recoveryCodes = enrolled.recovery_codes.length;
      out.passkeyName = enrolled.passkey.name;
      out.oldSessionAfterEnrolment = (await fetch('/api/v1/auth/me')).status;

      // Sign in with the passkey alone (a discoverable credential).
      const asked = await read('sign-in options', await post('/api/v1/auth/passkey/options', {}));
      const assertion = await step(
        'navigator.credentials.get (sign-in)',
        navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(asked.options.publicKey) }),
      );
      const session = await read(
        'passkey sign-in',
        await post('/api/v1/auth/passkey/login', { ceremony_id: asked.ceremony_id, credential: assertion.toJSON() }),
      );
      out.passkeySignInNeedsFactor = session.second_factor_required;
      out.whoAfterPasskey = (await read('me', await fetch('/api/v1/auth/me'))).actor;

      // A password sign-in now waits for the passkey as its second factor.
      const again = await read('second sign-in', await post('/api/v1/auth/login', { email, password }));
      out.passwordSignInNeedsFactor = again.second_factor_required;
      out.waitingSession = (await fetch('/api/v1/auth/me')).status;
      const factor = await read('factor options', await post('/api/v1/auth/factor/passkey/options', {}, again.csrf_token));
      const confirmed = await step(
        'navigator.credentials.get (second factor)',
        navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(factor.options.publicKey) }),
      );
      await read(
        'second factor',
        await post('/api/v1/auth/factor/passkey', { ceremony_id: factor.ceremony_id, credential: confirmed.toJSON() }, again.csrf_token),
      );
      out.whoAfterFactor = (await read('me', await fetch('/api/v1/auth/me'))).actor;
      return out;
    },
    { email, password },
  );
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  seen.credentials = credentials.length;
  seen.signCount = credentials[0]?.signCount;
  console.log(JSON.stringify(seen));

  const expect = (what, ok) => {
    if (!ok) {
      console.error(`FAILED: ${what}`);
      failed = true;
    }
  };
  expect('ten recovery codes with the first second factor', seen.recoveryCodes === 10);
  expect('the passkey keeps its name', seen.passkeyName === 'Chromium');
  expect('registering ends the session it was made in', seen.oldSessionAfterEnrolment === 401);
  expect('a passkey sign-in needs no other factor', seen.passkeySignInNeedsFactor === false);
  expect('the passkey signs its user in', /^user:/.test(seen.whoAfterPasskey ?? ''));
  expect('a password sign-in then waits for the second factor', seen.passwordSignInNeedsFactor === true);
  expect('the waiting session stands for nobody', seen.waitingSession === 401);
  expect('the passkey completes the password sign-in', seen.whoAfterFactor === seen.whoAfterPasskey);
  expect('one resident credential in the authenticator', seen.credentials === 1);
  expect('the signature counter rose with each use', seen.signCount >= 2);
} catch (e) {
  console.error(`FAILED: ${e.message ?? e}`);
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
