import type { Socket } from 'node:net';
import { formatIp } from './addresses.ts';

/**
 * SOCKS5 (RFC 1928) on a connection whose first byte was 5: no
 * authentication, CONNECT only. Clients use socks5h, so a name reaches us as
 * a name and the proxy resolves it, under the rules. The reply carries the
 * reason a connection failed as its code, since SOCKS has nowhere for text.
 */

/** Why an upstream connection was not made; each maps to a SOCKS reply and an HTTP status. */
export type DialFailure = 'refused' | 'unresolved' | 'connection-refused' | 'network-unreachable' | 'host-unreachable' | 'timeout' | 'failed';

export interface DialFailed {
  failure: DialFailure;
  detail: string;
}

export type Dialed = { upstream: Socket } | DialFailed;

/** What the proxy lends the SOCKS side: checked connections, and joining one to its client. */
export interface Upstreams {
  dial(host: string, port: number): Promise<Dialed>;
  splice(client: Socket, upstream: Socket, head: Buffer): void;
}

const VERSION = 0x05;
const NO_AUTHENTICATION = 0x00;
const NO_ACCEPTABLE_METHOD = 0xff;
const CONNECT = 0x01;
const ADDRESS_IPV4 = 0x01;
const ADDRESS_NAME = 0x03;
const ADDRESS_IPV6 = 0x04;

export const REPLY = {
  succeeded: 0x00,
  generalFailure: 0x01,
  notAllowed: 0x02,
  networkUnreachable: 0x03,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const;

const REPLY_FOR: Record<DialFailure, number> = {
  refused: REPLY.notAllowed,
  unresolved: REPLY.hostUnreachable,
  'connection-refused': REPLY.connectionRefused,
  'network-unreachable': REPLY.networkUnreachable,
  'host-unreachable': REPLY.hostUnreachable,
  timeout: REPLY.hostUnreachable,
  failed: REPLY.generalFailure,
};

interface Request {
  command: number;
  addressType: number;
  host: string;
  port: number;
  length: number;
}

/** Speaks SOCKS5 on the socket, `first` being the bytes already read from it. */
export function serveSocks(socket: Socket, first: Buffer, upstreams: Upstreams): void {
  let buffered = first;
  let greeted = false;
  const onData = (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    advance();
  };
  // A client that ends before asking for anything gets nothing more.
  const onEnd = () => socket.destroy();

  const advance = () => {
    if (!greeted) {
      // VER NMETHODS METHODS…
      if (buffered.length < 2) return;
      if (buffered[0] !== VERSION) return void socket.destroy();
      const methodsEnd = 2 + (buffered[1] ?? 0);
      if (buffered.length < methodsEnd) return;
      if (!buffered.subarray(2, methodsEnd).includes(NO_AUTHENTICATION)) return void endWith(socket, Buffer.from([VERSION, NO_ACCEPTABLE_METHOD]));
      socket.write(Buffer.from([VERSION, NO_AUTHENTICATION]));
      buffered = buffered.subarray(methodsEnd);
      greeted = true;
    }
    const request = readRequest(buffered);
    if (request === 'incomplete') return;
    socket.off('data', onData);
    socket.off('end', onEnd);
    socket.pause();
    if (request === 'malformed') return void socket.destroy();
    if (request.command !== CONNECT) return void endWith(socket, reply(REPLY.commandNotSupported));
    if (request.addressType === -1) return void endWith(socket, reply(REPLY.addressTypeNotSupported));
    // Bytes sent after the request, before our reply (an optimistic client), are the tunnel's first.
    const head = buffered.subarray(request.length);
    void upstreams
      .dial(request.host, request.port)
      .then((dialed) => {
        if ('failure' in dialed) return endWith(socket, reply(REPLY_FOR[dialed.failure]));
        socket.write(reply(REPLY.succeeded));
        upstreams.splice(socket, dialed.upstream, head);
      })
      .catch(() => socket.destroy());
  };

  socket.on('data', onData);
  socket.on('end', onEnd);
  socket.resume();
  advance();
}

/** VER CMD RSV ATYP DST.ADDR DST.PORT; an unknown address type comes back as -1, to be answered rather than dropped. */
function readRequest(bytes: Buffer): Request | 'incomplete' | 'malformed' {
  if (bytes.length < 4) return 'incomplete';
  if (bytes[0] !== VERSION) return 'malformed';
  const command = bytes[1] ?? 0;
  const addressType = bytes[3] ?? 0;
  let host: string;
  let addressEnd: number;
  if (addressType === ADDRESS_IPV4) {
    addressEnd = 8;
    if (bytes.length < addressEnd + 2) return 'incomplete';
    host = formatIp({ family: 4, value: BigInt(bytes.readUInt32BE(4)) });
  } else if (addressType === ADDRESS_IPV6) {
    addressEnd = 20;
    if (bytes.length < addressEnd + 2) return 'incomplete';
    host = formatIp({ family: 6, value: (bytes.readBigUInt64BE(4) << 64n) | bytes.readBigUInt64BE(12) });
  } else if (addressType === ADDRESS_NAME) {
    if (bytes.length < 5) return 'incomplete';
    addressEnd = 5 + (bytes[4] ?? 0);
    if (bytes.length < addressEnd + 2) return 'incomplete';
    host = bytes.toString('utf8', 5, addressEnd);
  } else {
    // The length of an unknown address is unknown too: answer at once, read no further.
    return { command, addressType: -1, host: '', port: 0, length: bytes.length };
  }
  return { command, addressType, host, port: bytes.readUInt16BE(addressEnd), length: addressEnd + 2 };
}

/** A reply with an empty bound address: where the proxy connected from is none of the sandbox's business. */
function reply(code: number): Buffer {
  return Buffer.from([VERSION, code, 0x00, ADDRESS_IPV4, 0, 0, 0, 0, 0, 0]);
}

/** Sends the last words and closes, without waiting for the client to close its side. */
function endWith(socket: Socket, bytes: Buffer): void {
  if (socket.destroyed) return;
  socket.end(bytes, () => socket.destroy());
}
