// A real, OpenID Certified authorization server (oidc-provider) for the
// end-to-end tests, run as a separate process by the Go test.
//
// Standard input is line-delimited JSON. The first line configures it:
//
//   {
//     "port": 4443,                      // on 127.0.0.1; the issuer is https://127.0.0.1:<port>
//     "tls": {"cert": "server.pem", "key": "server-key.pem", "clientCA": ["clients-ca.pem"]},
//     "keys": [<private JWK>, ...],      // the signing keys, the first one signs
//     "clients": [<client metadata>, ...],
//     "resources": {"https://rs.test": {"scope": "a b", "format": "jwt", "alg": "ES256"}},
//     "ttl": {"<client_id>": <seconds>}, // client-credentials access token lifetimes; default 3600
//     "claims": {"<client_id>": {...}},  // extra claims of the client's access tokens (JWT and introspection)
//     "rar": ["<type>", ...]             // authorization_details types (RFC 9396) a token request may carry
//   }
//
// When it listens it prints {"issuer": "..."} on a line of standard output.
// Each later line is a command, answered by a line:
//
//   {"op": "rotate", "keys": [...]}      // serve and sign with a new key set: {"ok": true}
//   {"op": "stats"}                      // requests by path so far: {"paths": {"/jwks": 3, ...}}
//   {"op": "claims", "client": "<client_id>", "claims": {...}}   // the client's extra claims from now on: {"ok": true}
//   {"op": "dpop-key", "name": "k1", "alg": "ES256"}             // a DPoP key pair made by the dpop package: {"jwk": {...}, "jkt": "..."}
//   {"op": "dpop-proof", "key": "k1", "htm": "GET", "htu": "https://...", "accessToken": "...", "nonce": "..."}
//                                        // a DPoP proof by that key, made by the dpop package: {"proof": "..."}
//
// DPoP (RFC 9449) is on, as oidc-provider has it by default: a token
// request with a DPoP proof gets a token bound to its key (cnf.jkt).
//
// Client certificates are asked for in every handshake and verified
// against clientCA when given; the mTLS features read them from the
// connection (RFC 8705: tls_client_auth, self_signed_tls_client_auth and
// certificate-bound access tokens).

import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { createInterface } from 'node:readline';

import * as DPoP from 'dpop';
import Provider, { errors } from 'oidc-provider';

// standard output carries this protocol only: oidc-provider's notices
// (console.info) go to standard error with its warnings
console.info = console.error;
console.log = console.error;

const lines = createInterface({ input: process.stdin });
const iterator = lines[Symbol.asyncIterator]();
const first = await iterator.next();
const config = JSON.parse(first.value);
const issuer = `https://127.0.0.1:${config.port}`;
const paths = {};
const extraClaims = { ...(config.claims || {}) };
const dpopKeys = {};

function subjectMatches(cert, property, expected) {
  switch (property) {
    case 'tls_client_auth_subject_dn':
      return cert.subject.split('\n').join(',') === expected;
    case 'tls_client_auth_san_dns':
      return (cert.subjectAltName || '').split(', ').includes(`DNS:${expected}`);
    default:
      return false;
  }
}

function makeProvider(keys) {
  const provider = new Provider(issuer, {
    clients: config.clients,
    jwks: { keys },
    clientDefaults: {
      grant_types: ['client_credentials'],
      response_types: [],
      id_token_signed_response_alg: 'ES256',
      token_endpoint_auth_method: 'tls_client_auth',
    },
    clientAuthMethods: ['client_secret_basic', 'private_key_jwt', 'tls_client_auth', 'self_signed_tls_client_auth'],
    scopes: [...new Set(Object.values(config.resources || {}).flatMap((r) => r.scope.split(' ')))],
    ttl: {
      ClientCredentials(ctx, token, client) {
        return config.ttl?.[client.clientId] ?? 3600;
      },
    },
    extraTokenClaims(ctx, token) {
      return extraClaims[token.clientId];
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      richAuthorizationRequests: {
        enabled: (config.rar || []).length > 0,
        types: Object.fromEntries((config.rar || []).map((type) => [type, { validate() {} }])),
        authorizationDetailsForGrantSource(ctx, source) {
          return source.rar;
        },
        authorizationDetailsForAccessToken(ctx) {
          return JSON.parse(ctx.oidc.params.authorization_details);
        },
        authorizationDetailsForIntrospection(ctx, token) {
          return token.rar;
        },
      },
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        tlsClientAuth: true,
        selfSignedTlsClientAuth: true,
        getCertificate(ctx) {
          return ctx.socket.getPeerX509Certificate?.();
        },
        certificateAuthorized(ctx) {
          return ctx.socket.authorized === true;
        },
        certificateSubjectMatches(ctx, property, expected) {
          const cert = ctx.socket.getPeerX509Certificate?.();
          return cert !== undefined && subjectMatches(cert, property, expected);
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: (ctx, client, oneOf) => oneOf,
        useGrantedResource: () => false,
        getResourceServerInfo(ctx, resourceIndicator) {
          const rs = config.resources?.[resourceIndicator];
          if (!rs) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: rs.scope,
            audience: resourceIndicator,
            accessTokenFormat: rs.format,
            jwt: { sign: { alg: rs.alg || 'ES256' } },
          };
        },
      },
    },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  return provider;
}

let handler = makeProvider(config.keys).callback();

const server = createServer({
  cert: readFileSync(config.tls.cert),
  key: readFileSync(config.tls.key),
  ca: (config.tls.clientCA || []).map((f) => readFileSync(f)),
  requestCert: true,
  rejectUnauthorized: false,
}, (req, res) => {
  const path = new URL(req.url, issuer).pathname;
  paths[path] = (paths[path] || 0) + 1;
  handler(req, res);
});

server.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

for (;;) {
  const { value: line, done } = await iterator.next();
  if (done) {
    break;
  }
  const cmd = JSON.parse(line);
  switch (cmd.op) {
    case 'rotate':
      handler = makeProvider(cmd.keys).callback();
      process.stdout.write(`${JSON.stringify({ ok: true })}\n`);
      break;
    case 'stats':
      process.stdout.write(`${JSON.stringify({ paths })}\n`);
      break;
    case 'claims':
      extraClaims[cmd.client] = cmd.claims;
      process.stdout.write(`${JSON.stringify({ ok: true })}\n`);
      break;
    case 'dpop-key': {
      const pair = await DPoP.generateKeyPair(cmd.alg || 'ES256');
      dpopKeys[cmd.name] = pair;
      const jwk = await crypto.subtle.exportKey('jwk', pair.publicKey);
      const jkt = await DPoP.calculateThumbprint(pair.publicKey);
      process.stdout.write(`${JSON.stringify({ jwk, jkt })}\n`);
      break;
    }
    case 'dpop-proof': {
      const proof = await DPoP.generateProof(dpopKeys[cmd.key], cmd.htu, cmd.htm, cmd.nonce, cmd.accessToken);
      process.stdout.write(`${JSON.stringify({ proof })}\n`);
      break;
    }
    default:
      process.stdout.write(`${JSON.stringify({ error: `unknown op ${cmd.op}` })}\n`);
  }
}
server.close();
process.exit(0);
