/** protocol/: the types shared across rooms — the error registry, the Connect wire form, envd's messages, the stream multiplexer. */
export { BrigError, ERROR_CODES, EXIT, isBrigError, outOfDescriptors } from './errors.ts';
export type { ErrorCode } from './errors.ts';
export { CONNECT_CODES, ConnectError, ENVELOPE_FLAG, EnvelopeReader, encodeEndStream, encodeEnvelope, parseMessage } from './connect.ts';
export type { ConnectCode, Envelope } from './connect.ts';
export { processEvents } from './process-stream.ts';
export { ENVD_PORT, ENVD_VERSION, SERVICE, goSignalStatus, signalOfStatus } from './envd.ts';
export { EGRESS_DIR_INSIDE, EGRESS_PORT, EGRESS_SOCKET_NAME, INSIDE_DIR, NODE_DIR_INSIDE, NODE_PRELOAD_INSIDE, RELAY_INSIDE } from './egress.ts';
export { DEFAULT_DAEMON_URL, MONITOR_TAG, apiKeyFile, defaultStateDir, llmKeyFile, traversable } from './daemon.ts';
export { forwardedHeaders } from './http.ts';
export { describeMemoryEvent } from './memory.ts';
export type { MemoryEvent } from './memory.ts';
export { fileSignature, sameSecret, signatureExpired, signedFileQuery, signedWith, trafficAccessToken } from './signature.ts';
export type { FileOperation, SignatureInput, SignedFileRequest } from './signature.ts';
export type {
  EndEvent,
  EntryInfo,
  FileType,
  FilesystemEvent,
  FilesystemEventType,
  ProcessConfig,
  ProcessEvent,
  ProcessInfo,
  ProcessInput,
  ProcessSelector,
  ProcessSignal,
  ProcessStreamMessage,
  PtySize,
  StartRequest,
  WatchDirMessage,
  WriteInfo,
} from './envd.ts';
export { processAlive } from './pids.ts';
export { Mux, fdTransport, joinStreams } from './mux.ts';
export type { MuxOptions, MuxStream } from './mux.ts';
