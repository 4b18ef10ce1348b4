// Reads one JSON command on stdin and writes the result on stdout:
//   {"op":"encrypt","spki":"<base64 DER>","alg":"ECDH-ES+A256KW","enc":"A256GCM","plaintext":"..."}
//     -> {"jwe":"<compact>"}
//   {"op":"decrypt","pkcs8":"<base64 DER>","jwe":"<compact>"} -> {"plaintext":"...","alg":"...","enc":"..."}
import { CompactEncrypt, compactDecrypt, importSPKI, importPKCS8 } from 'jose';

const pem = (label, b64) => `-----BEGIN ${label}-----\n${b64.match(/.{1,64}/g).join('\n')}\n-----END ${label}-----\n`;
let input = '';
for await (const chunk of process.stdin) input += chunk;
const cmd = JSON.parse(input);
if (cmd.op === 'encrypt') {
  const key = await importSPKI(pem('PUBLIC KEY', cmd.spki), cmd.alg);
  const jwe = await new CompactEncrypt(new TextEncoder().encode(cmd.plaintext))
    .setProtectedHeader({ alg: cmd.alg, enc: cmd.enc })
    .encrypt(key);
  process.stdout.write(JSON.stringify({ jwe }));
} else if (cmd.op === 'decrypt') {
  const key = await importPKCS8(pem('PRIVATE KEY', cmd.pkcs8), 'ECDH-ES+A256KW');
  const { plaintext, protectedHeader } = await compactDecrypt(cmd.jwe, key);
  process.stdout.write(JSON.stringify({ plaintext: new TextDecoder().decode(plaintext), alg: protectedHeader.alg, enc: protectedHeader.enc }));
} else {
  throw new Error('unknown op');
}
