// Drives MX's official Node SDK for the Platform API (mx-platform-node)
// against a base path, for the e2e tests. It reads a plan from stdin:
//
//   {"basePath": "http://127.0.0.1:…",
//    "accept": true,       // baseOptions.headers.Accept as the SDK's README shows
//    "username": "…", "password": "…",   // optional, as in the README
//    "steps": [{"op": "listUsers"}, {"op": "readUser", "guid": "USR-1"},
//              {"op": "createUser", "user": {…}},
//              {"op": "updateUser", "guid": "…", "user": {…}},
//              {"op": "deleteUser", "guid": "…", "accept": "…"},
//              {"op": "listUsers", "parallel": 4}]}
//
// and writes {"results": [...]} to stdout, one result per step (an array
// of them for a step with "parallel"): {"op", "status", "data",
// "retryAfter"} as the SDK's promise resolved or rejected, or {"op",
// "error"} when no HTTP answer came.
import { Configuration, UsersApi } from 'mx-platform-node';

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const plan = JSON.parse(Buffer.concat(chunks).toString('utf8'));

// The README's Getting Started, with the sidecar as the base path.
const options = { basePath: plan.basePath };
if (plan.username !== undefined || plan.password !== undefined) {
  options.username = plan.username;
  options.password = plan.password;
}
if (plan.accept) {
  options.baseOptions = {
    headers: {
      Accept: 'application/vnd.mx.api.v1+json'
    }
  };
}
const usersApi = new UsersApi(new Configuration(options));

function call(step) {
  switch (step.op) {
    case 'listUsers':
      return usersApi.listUsers();
    case 'readUser':
      return usersApi.readUser(step.guid);
    case 'createUser':
      return usersApi.createUser({ user: step.user });
    case 'updateUser':
      return usersApi.updateUser(step.guid, { user: step.user });
    case 'deleteUser':
      return usersApi.deleteUser(step.accept, step.guid);
  }
  throw new Error('unknown op ' + step.op);
}

async function run(step) {
  try {
    const res = await call(step);
    return { op: step.op, status: res.status, data: res.data === '' ? null : res.data, retryAfter: res.headers['retry-after'] ?? null };
  } catch (e) {
    if (e.response) {
      return { op: step.op, status: e.response.status, data: e.response.data, retryAfter: e.response.headers['retry-after'] ?? null };
    }
    return { op: step.op, error: String(e.message || e) };
  }
}

const results = [];
for (const step of plan.steps) {
  if (step.parallel) {
    results.push(await Promise.all(Array.from({ length: step.parallel }, () => run(step))));
  } else {
    results.push(await run(step));
  }
}
process.stdout.write(JSON.stringify({ results }));
