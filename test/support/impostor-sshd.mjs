#!/usr/bin/env node
// An impostor on the provisioning network: an SSH server with its own host key that lets anyone in
// and answers every command with the instance-id it was told (the checkin id it "learned"). A client
// that skips host key checking, as the design's first snippet does, would take it for the server.
//   node impostor-sshd.mjs <address> <file holding the instance-id>
import fs from 'node:fs';
import ssh2 from 'ssh2';

const [address, idFile] = process.argv.slice(2);
const { private: privateKey } = ssh2.utils.generateKeyPairSync('ed25519');
const server = new ssh2.Server({ hostKeys: [privateKey] }, (client, info) => {
  // Every client that starts a handshake (it gets this impostor's host key); a client that pins the
  // real server's key stops there, before it could authenticate or send a command.
  console.log(`handshake from ${info.ip}: ${info.header?.identRaw ?? 'unknown client'}`);
  client.on('authentication', (ctx) => {
    console.log(`authentication from ${info.ip}`);
    ctx.accept();
  });
  client.on('error', () => {});
  client.on('ready', () => {
    client.on('session', (accept) => {
      const session = accept();
      session.on('exec', (acceptExec, _reject, info) => {
        const stream = acceptExec();
        const id = fs.existsSync(idFile) ? fs.readFileSync(idFile, 'utf8').trim() : '';
        console.log(`exec: ${info.command}`);
        stream.write(`${id}\n`);
        stream.exit(0);
        stream.end();
      });
    });
  });
});
server.listen(22, address, () => console.log(`impostor listening on ${address}:22`));
