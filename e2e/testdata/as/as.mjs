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
//     "ttl": {"<client_id>": <seconds>}  // client-credentials access token lifetimes; default 3600
//   }
//
// When it listens it prints {"issuer": "..."} on a line of standard output.
// Each later line is a command, answered by a line:
//
//   {"op": "rotate", "keys": [...]}      // serve and sign with a new key set: {"ok": true}
//   {"op": "stats"}                      // requests by path so far: {"paths": {"/jwks": 3, ...}}
//
// Client certificates are asked for in every handshake and verified
// against clientCA when given; the mTLS features read them from the
// connection (RFC 8705: tls_client_auth, self_signed_tls_client_auth and
// certificate-bound access tokens).

import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { createInterface } from 'node:readline';

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
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
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
    default:
      process.stdout.write(`${JSON.stringify({ error: `unknown op ${cmd.op}` })}\n`);
  }
}
server.close();
process.exit(0);
