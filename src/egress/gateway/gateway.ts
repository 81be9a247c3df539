import { forwardedHeaders } from '../../protocol/index.ts';
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { performance } from 'node:perf_hooks';
import type { Budget, Provider, Spent, TokenUsage, TranscriptEntry, Violation } from '../types.ts';
import { refusalReply, type ErrorReply, type Refusal } from './errors.ts';
import type { GatewayConfig } from './keys.ts';
import { CREDENTIAL_HEADERS, modelEndpoint, PROVIDER_SPECS, providerRoute, upstreamUrl, type ProviderRoute } from './providers.ts';
import { BodyCapture, scrub } from './transcript.ts';
import { usageMeter, type UsageMeter } from './usage.ts';

/**
 * The LLM gateway: a sandbox's agent talks to its provider through it, with
 * a placeholder where its key would be. Each request is checked against the
 * sandbox's policy (which providers, how much), given the host's key and
 * streamed on; the answer streams back as it comes, counted and recorded on
 * the way. The sandbox never sees a key, and the transcript never holds one.
 */

/** One sandbox as the gateway sees it; the host keeps the counts and the records. */
export interface GatewaySession {
  sandbox: string;
  /** Only these are reachable; any other is refused (403) in its own error shape. */
  providers: readonly Provider[];
  /** 0 is no limit. */
  budget: Budget;
  spent(): Spent;
  /** `{requests: 1}` when a request is forwarded, the tokens when its answer has said them. */
  charge(delta: Spent): void;
  transcript(entry: TranscriptEntry): void;
  violation(violation: Violation): void;
}

export interface Gateway {
  /** Serves one request for a provider (`/anthropic/…`, `/openai/…`, `/gemini/…`) on behalf of a sandbox. */
  handle(req: IncomingMessage, res: ServerResponse, session: GatewaySession): void;
  /** Cuts every exchange in flight and closes the pooled upstream connections. */
  close(): void;
}


const LABEL: Record<Provider, string> = { anthropic: 'Anthropic', openai: 'OpenAI', gemini: 'Gemini' };

export function createGateway(config: GatewayConfig): Gateway {
  // Pooled connections: a warm TLS session to the provider is most of the gateway's latency budget.
  const agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) };
  const inFlight = new Set<() => void>();

  return {
    handle(req, res, session) {
      const route = providerRoute(req.url ?? '/');
      if (route === null) return notFound(req, res);
      const { provider } = route;
      const target = PROVIDER_SPECS[provider].prefix + route.path;
      const refuse = (refusal: Refusal, message: string, rule?: string) => {
        if (rule !== undefined) session.violation({ time: new Date().toISOString(), sandbox: session.sandbox, kind: 'llm', target, rule });
        reply(req, res, refusalReply(provider, refusal, message));
      };

      if (!session.providers.includes(provider)) {
        const allowed = session.providers.length > 0 ? session.providers.join(', ') : 'none';
        return refuse('not-allowed', `brig: sandbox ${session.sandbox} may not use ${LABEL[provider]} (its policy allows: ${allowed}).`, 'provider not allowed');
      }
      if (modelEndpoint(route, req.method) === undefined) {
        const shown = PROVIDER_SPECS[provider].endpoints.map((allowed) => `${allowed.method} ${allowed.shown}`).join(', ');
        const path = route.path.split('?')[0];
        return refuse('endpoint', `brig: the gateway forwards only ${LABEL[provider]}'s model endpoints (${shown}), not ${req.method ?? 'GET'} ${path}.`, 'endpoint not allowed');
      }
      const key = config.keys[provider];
      if (key === undefined) {
        const variables = PROVIDER_SPECS[provider].keyVariables.join(' or ');
        return refuse('no-key', `brig has no ${LABEL[provider]} API key to send. On the host, set ${variables} in brig's environment or its key file; the key never comes from the sandbox.`);
      }
      const overdrawn = budgetRefusal(session);
      if (overdrawn !== null) return refuse('budget', overdrawn.message, overdrawn.rule);

      forward(req, res, session, route, key);
    },

    close() {
      for (const cut of [...inFlight]) cut();
      agents.http.destroy();
      agents.https.destroy();
    },
  };

  function forward(req: IncomingMessage, res: ServerResponse, session: GatewaySession, route: ProviderRoute, key: string): void {
    const { provider } = route;
    let url: URL;
    let upstream: ClientRequest;
    try {
      url = upstreamUrl(config.upstreams[provider], route.path);
      const options = { method: req.method, headers: upstreamHeaders(req.headers, url, provider, key) };
      upstream = url.protocol === 'https:' ? httpsRequest(url, { ...options, agent: agents.https }) : httpRequest(url, { ...options, agent: agents.http });
    } catch (error) {
      // A bad upstream in the host's configuration, or a request Node will not send on: nothing left the host.
      return reply(req, res, refusalReply(provider, 'unreachable', scrub(`brig's gateway cannot send this request to ${LABEL[provider]}: ${(error as Error).message}`, key)));
    }
    const started = performance.now();
    const time = new Date().toISOString();
    const requestBody = new BodyCapture();
    const responseBody = new BodyCapture();
    let meter: UsageMeter | null = null;
    let status = 0;
    let headersMs = 0;
    let responseEncoding: string | undefined;
    let timedOut = false;
    let done = false;

    upstream.setNoDelay(true);
    session.charge({ requests: 1, inputTokens: 0, outputTokens: 0 });

    function sendUp(chunk: Buffer): void {
      requestBody.add(chunk);
      if (!upstream.write(chunk)) req.pause();
    }

    const finish = (error?: string) => {
      if (done) return;
      done = true;
      req.off('data', sendUp);
      clearTimeout(headerTimer);
      inFlight.delete(cut);
      const usage: TokenUsage = meter?.usage() ?? { inputTokens: 0, outputTokens: 0 };
      if (usage.inputTokens > 0 || usage.outputTokens > 0) session.charge({ requests: 0, ...usage });
      const entry: TranscriptEntry = {
        time,
        sandbox: session.sandbox,
        provider,
        method: req.method ?? 'GET',
        path: scrub(url.pathname + url.search, key),
        status,
        request: scrub(requestBody.text(encoding(req.headers['content-encoding'])), key),
        response: scrub(responseBody.text(responseEncoding), key),
        truncated: requestBody.truncated || responseBody.truncated,
        usage,
        headersMs: round(headersMs),
        totalMs: round(performance.now() - started),
      };
      if (error !== undefined) entry.error = scrub(error, key);
      session.transcript(entry);
    };

    /** Fails the exchange: with the provider's error shape while nothing was sent, by cutting the connection after. */
    const fail = (error: string, refusal: Refusal) => {
      if (done) return;
      upstream.destroy();
      if (res.headersSent || res.destroyed) {
        res.destroy();
        return finish(error);
      }
      const answer = refusalReply(provider, refusal, error);
      status = answer.status;
      responseBody.add(Buffer.from(answer.body));
      reply(req, res, answer);
      finish(error);
    };

    const cut = () => {
      upstream.destroy();
      res.destroy();
      finish('the gateway closed');
    };
    inFlight.add(cut);

    const headerTimer = setTimeout(() => {
      timedOut = true;
      upstream.destroy();
    }, config.headerTimeoutMs);

    upstream.on('response', (answer) => {
      clearTimeout(headerTimer);
      headersMs = performance.now() - started;
      status = answer.statusCode ?? 502;
      responseEncoding = encoding(answer.headers['content-encoding']);
      meter = responseEncoding === undefined ? usageMeter(provider, header(answer.headers['content-type'])) : null;
      res.writeHead(status, forwardedHeaders(answer.headers, false));
      // Headers now: a client waits for them before it reads the first event of a stream.
      res.flushHeaders();
      answer.on('data', (chunk: Buffer) => {
        meter?.write(chunk);
        responseBody.add(chunk);
        if (!res.write(chunk)) answer.pause();
      });
      res.on('drain', () => answer.resume());
      answer.on('end', () => {
        res.end();
        finish();
      });
      // An upstream that dies mid-body reaches the client as a cut connection, never as a clean (short) end.
      answer.on('error', () => {});
      answer.on('close', () => {
        if (answer.complete) return;
        res.destroy();
        finish('the upstream closed the connection mid-response');
      });
    });

    // `on`, not `once`: a second 'error' with no listener would take the whole process down.
    upstream.on('error', (error: NodeJS.ErrnoException) => {
      if (timedOut) return fail(`${LABEL[provider]} (${url.origin}) sent no response headers within ${config.headerTimeoutMs / 1000} s.`, 'timeout');
      fail(`brig's gateway could not reach ${LABEL[provider]} at ${url.origin}: ${error.code ?? error.message}.`, 'unreachable');
    });

    // The client going away (an agent cancelling a turn) cancels the upstream request too.
    res.on('close', () => {
      if (res.writableFinished) return;
      upstream.destroy();
      finish('the client closed the connection');
    });

    req.on('data', sendUp);
    upstream.on('drain', () => req.resume());
    req.on('end', () => upstream.end());
    req.on('error', () => upstream.destroy());
  }
}

/** Null while the sandbox may spend; otherwise which budget is spent, and by how much. */
function budgetRefusal(session: GatewaySession): { message: string; rule: string } | null {
  const { maxRequests, maxTokens } = session.budget;
  const spent = session.spent();
  if (maxRequests > 0 && spent.requests >= maxRequests) {
    return {
      rule: 'budget: requests',
      message: `brig: sandbox ${session.sandbox} has spent its LLM request budget (${spent.requests} of ${maxRequests} requests); the gateway forwards no more of its requests. Raise the budget's maxRequests on the host to go on.`,
    };
  }
  const tokens = spent.inputTokens + spent.outputTokens;
  if (maxTokens > 0 && tokens >= maxTokens) {
    return {
      rule: 'budget: tokens',
      message: `brig: sandbox ${session.sandbox} has spent its LLM token budget (${tokens} of ${maxTokens} tokens: ${spent.inputTokens} input, ${spent.outputTokens} output); the gateway forwards no more of its requests. Raise the budget's maxTokens on the host to go on.`,
    };
  }
  return null;
}

/**
 * The client's headers, less its credentials and the hop-by-hop ones, plus
 * the host's key. Upstream is asked for an uncompressed answer: the gateway
 * reads it on the way (usage, transcript), and the hop is a fast one.
 */
function upstreamHeaders(incoming: IncomingHttpHeaders, url: URL, provider: Provider, key: string): OutgoingHttpHeaders {
  const headers = forwardedHeaders(incoming);
  for (const name of CREDENTIAL_HEADERS) delete headers[name];
  headers.host = url.host;
  headers['accept-encoding'] = 'identity';
  PROVIDER_SPECS[provider].authorize(headers, key);
  return headers;
}

/** An answer from the gateway itself; a body it did not read ends the connection rather than being read in vain. */
function reply(req: IncomingMessage, res: ServerResponse, answer: ErrorReply): void {
  const headers: Record<string, string> = { ...answer.headers };
  if (!req.complete) headers.connection = 'close';
  req.resume();
  res.writeHead(answer.status, headers).end(answer.body);
}

function notFound(req: IncomingMessage, res: ServerResponse): void {
  const message = `brig's LLM gateway serves /anthropic/…, /openai/… and /gemini/…; ${JSON.stringify(req.url ?? '')} is none of them.`;
  reply(req, res, { status: 404, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ error: { message, type: 'not_found_error' } }) });
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/** A Content-Encoding that changes the bytes; undefined for none or identity. */
function encoding(value: string | undefined): string | undefined {
  const text = value?.trim();
  return text && !/^identity$/i.test(text) ? text : undefined;
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
