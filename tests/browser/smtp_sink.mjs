// A small SMTP server for the browser tests (node:net, nothing to install): EHLO, MAIL, RCPT,
// DATA, RSET, NOOP and QUIT on a random port, keeping each message so a test can read the link
// a person would click. Not a test file itself (node --test runs only *.test.mjs).

import net from 'node:net';

/** The text of a message with quoted-printable undone, as a mail client shows it. */
function decodeQuotedPrintable(raw) {
  const joined = raw.replace(/=\r\n/g, '');
  const bytes = [];
  for (let at = 0; at < joined.length; at += 1) {
    const hex = joined.slice(at + 1, at + 3);
    if (joined[at] === '=' && /^[0-9A-F]{2}$/i.test(hex)) {
      bytes.push(parseInt(hex, 16));
      at += 2;
    } else {
      bytes.push(...Buffer.from(joined[at]));
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

export async function startSmtpSink() {
  const mails = [];
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffer = '';
    let inData = false;
    let data = [];
    let envelope = { from: '', to: [] };
    socket.write('220 sink.test ESMTP\r\n');
    socket.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      let end;
      while ((end = buffer.indexOf('\r\n')) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (inData) {
          if (line === '.') {
            inData = false;
            const raw = data.join('\r\n');
            mails.push({ ...envelope, raw, text: decodeQuotedPrintable(raw) });
            envelope = { from: '', to: [] };
            data = [];
            socket.write('250 2.0.0 Ok: queued\r\n');
          } else {
            data.push(line.startsWith('.') ? line.slice(1) : line);
          }
          continue;
        }
        const upper = line.toUpperCase();
        const address = () => line.slice(line.indexOf(':') + 1).trim().replace(/^<|>.*$/g, '');
        if (upper.startsWith('EHLO')) socket.write('250-sink.test\r\n250 8BITMIME\r\n');
        else if (upper.startsWith('HELO')) socket.write('250 sink.test\r\n');
        else if (upper.startsWith('MAIL FROM:')) {
          envelope.from = address();
          socket.write('250 2.1.0 Ok\r\n');
        } else if (upper.startsWith('RCPT TO:')) {
          envelope.to.push(address());
          socket.write('250 2.1.5 Ok\r\n');
        } else if (upper === 'DATA') {
          inData = true;
          socket.write('354 End data with <CR><LF>.<CR><LF>\r\n');
        } else if (upper === 'RSET' || upper === 'NOOP') socket.write('250 2.0.0 Ok\r\n');
        else if (upper === 'QUIT') socket.end('221 2.0.0 Bye\r\n');
        else socket.write('502 5.5.2 Command not recognized\r\n');
      }
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    url: `smtp://127.0.0.1:${port}`,
    mails,
    /** Waits (up to 10 s) for the `nth` (1-based) message to `to`. */
    async waitFor(to, nth = 1) {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const found = mails.filter((mail) => mail.to.some((rcpt) => rcpt.toLowerCase() === to.toLowerCase()));
        if (found.length >= nth) return found[nth - 1];
        if (Date.now() > deadline) throw new Error(`no email #${nth} for ${to}; the sink has ${JSON.stringify(mails.map((m) => m.to))}`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    },
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** The link of `fragment` (`reset`, `invitation`) in a message. */
export function linkIn(mail, fragment) {
  const match = new RegExp(`(https?://\\S+/settings/developer#${fragment}=[0-9a-f]+)`).exec(mail.text);
  if (!match) throw new Error(`no #${fragment}= link in:\n${mail.text}`);
  return match[1];
}
