// A real OpenID Connect provider for the sign-in tests: oidc-provider (an OpenID-certified implementation),
// configured the way a trust's Entra ID tenant is for ringfence: one confidential web client that must use
// PKCE (S256), `groups` and `roles` (app roles) claims in the ID token, and RP-initiated logout.
//
// Usage: node provider.mjs  (configuration in the environment, so the test decides ports and secrets)
//   OIDC_PORT            port on 127.0.0.1 to listen on. The issuer is http://localhost:PORT: another host
//                        than the dashboard's 127.0.0.1, so to a browser the provider is another site, as a
//                        trust's provider is (SameSite cookies behave as they will in production).
//   OIDC_CLIENT_ID       the client's id
//   OIDC_CLIENT_SECRET   its secret
//   OIDC_REDIRECT_URI    ringfence's /auth/callback (several, separated by spaces: one per dashboard)
//   OIDC_LOGOUT_URI      where the provider may send the browser back after signing out (likewise)
// Prints one line of JSON, {"issuer": ...}, once it listens.
//
// Signing in needs no UI of ours: oidc-provider's development interactions serve a login form (any password;
// the login is the account id), which the test submits over HTTP like a browser. Consent is not asked: the
// client is first-party, as an Entra ID app registration with admin consent is, so a grant is made at once.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`provider.mjs: ${name} is not set`);
    process.exit(2);
  }
  return value;
};

const port = Number(env('OIDC_PORT'));
const issuer = `http://localhost:${port}`;
const clientId = env('OIDC_CLIENT_ID');

// The people of the test trust: their groups (or their app roles, the `roles` claim, as Entra ID sends the
// app roles assigned to a person) decide their role in ringfence (through oidc.yaml's mapping).
// Olga is in more groups than Entra ID puts in a token (over 200): as Entra ID does then, her token carries no
// `groups`, only `_claim_names`/`_claim_sources` pointing at Microsoft Graph (the "groups overage", OpenID
// Connect Core 5.6.2 distributed claims; oidc-provider passes them through as it would any distributed claim).
const GRAPH = 'https://graph.microsoft.com/v1.0/users/olga.overage/getMemberObjects';
const PEOPLE = {
  'ann.approver': { name: 'Ann Approver', email: 'ann.approver@trust.example', groups: ['rf-approvers', 'all-staff'] },
  'otto.operator': {
    name: 'Otto Operator', email: 'otto.operator@trust.example', groups: ['rf-operators'], roles: ['Ringfence.Operator'],
  },
  'vic.viewer': { name: 'Vic Viewer', email: 'vic.viewer@trust.example', groups: ['rf-viewers'] },
  'nina.nogroup': { name: 'Nina Nogroup', email: 'nina.nogroup@trust.example', groups: ['all-staff'] },
  'olga.overage': {
    name: 'Olga Overage',
    email: 'olga.overage@trust.example',
    roles: ['Ringfence.Approver'],
    distributed: { _claim_names: { groups: 'src1' }, _claim_sources: { src1: { endpoint: GRAPH } } },
  },
};

// A fresh signing key every run, published at the JWKS endpoint: ringfence must fetch it to verify anything.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: env('OIDC_CLIENT_SECRET'),
      redirect_uris: env('OIDC_REDIRECT_URI').split(/\s+/),
      post_logout_redirect_uris: env('OIDC_LOGOUT_URI').split(/\s+/),
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'profile'],
  // As Entra ID does with a groups claim configured: the groups come with every ID token, no scope asked.
  claims: { openid: ['sub', 'groups', 'roles'], email: ['email', 'email_verified'], profile: ['name'] },
  // Entra ID puts the groups in the ID token itself; so does this provider (not only at /userinfo).
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  async findAccount(ctx, id) {
    const person = PEOPLE[id];
    if (!person) return undefined;
    return {
      accountId: id,
      async claims() {
        const claims = { sub: id, email: person.email, email_verified: true, name: person.name };
        if (person.groups) claims.groups = person.groups;
        if (person.roles) claims.roles = person.roles;
        return { ...claims, ...person.distributed };
      },
    };
  },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid email profile');
    grant.addOIDCClaims(['email', 'name', 'groups', 'roles']);
    await grant.save();
    return grant;
  },
  renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
});

createServer(provider.callback()).listen(port, '127.0.0.1', () => {
  console.log(JSON.stringify({ issuer }));
});
