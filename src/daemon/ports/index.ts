/**
 * ports/: a sandbox's ports published on the host (seed 000). Its agent
 * port gives each TCP connection a fresh shell in the sandbox, on a
 * terminal, its output streamed back; its monitor port types lines into one
 * persistent shell (tag `brig-monitor`) that `brig attach` watches. Opt-in
 * per sandbox (brig create --agent-port, --monitor-port), where the policy's
 * network.publish allows; 127.0.0.1 unless a host is given. The shells are
 * started through the sandbox's own envd, as the sandbox's user: a port
 * reaches nothing of the host. The manager drives the publisher (opened
 * before a boot, served once running, closed at the end, listened on again
 * after a restart); no HTTP here.
 */
export { PortPublisher, type PortPublisherOptions } from './publisher.ts';
export { DEFAULT_HOST, formatAddress, parsePortAddress } from './address.ts';
