"""brig's code-interpreter server: E2B's code-interpreter HTTP API on port 49999.

What @e2b/code-interpreter (and the Python SDK) talk to:
    GET    /health                   "OK"
    POST   /execute                  {code, context_id?, language?, env_vars?} -> a stream of JSON lines
    POST   /contexts                 {language?, cwd?} -> {id, language, cwd}
    GET    /contexts                 [{id, language, cwd}, ...]
    DELETE /contexts/{id}
    POST   /contexts/{id}/restart

A context is one Jupyter kernel (contexts.py), started and driven with
jupyter_client directly (no notebook server in between): Python is
Debian's ipykernel, JavaScript, TypeScript and bash are brig's own kernels
(kernels.py). Output is written and flushed line by line as the kernel
sends it. The port is bound only once the default Python context is ready,
so the sandbox's ready-port check means runCode works at once.

Errors are HTTP 4xx/5xx with a JSON body {"code": N, "message": "..."}, the
shape of E2B's other APIs.
"""

import asyncio
import json
import logging
import os
import re
import signal
import sys

from tornado.iostream import StreamClosedError
from tornado.web import Application, HTTPError, RequestHandler

from contexts import Contexts, UnknownLanguage

PORT = int(os.environ.get('BRIG_CODE_INTERPRETER_PORT', '49999'))
ENV_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')
log = logging.getLogger('code-interpreter')


def refuse(status, message):
    # The message as an argument, not the format: tornado %-formats log_message, and messages hold the client's input.
    return HTTPError(status, '%s', message)


class Handler(RequestHandler):
    """JSON in, JSON out, errors included; CORS open, as E2B's (browsers run the SDK too)."""

    def initialize(self, contexts):
        self.contexts = contexts

    def set_default_headers(self):
        self.set_header('Access-Control-Allow-Origin', '*')
        self.set_header('Access-Control-Allow-Methods', 'GET, POST, DELETE, OPTIONS')
        self.set_header('Access-Control-Allow-Headers', '*')

    def options(self, *_args):
        self.set_status(204)

    def write_error(self, status_code, **kwargs):
        message = self._reason
        error = kwargs.get('exc_info', (None, None))[1]
        if isinstance(error, HTTPError) and error.log_message:
            message = error.log_message % error.args
        self.set_header('Content-Type', 'application/json')
        self.finish(json.dumps({'code': status_code, 'message': message}))

    def json_body(self):
        """The body as a JSON object; anything else is a 400."""
        if not self.request.body:
            return {}
        try:
            body = json.loads(self.request.body)
        except ValueError as error:
            raise refuse(400, f'the body is not JSON: {error}') from None
        if not isinstance(body, dict):
            raise refuse(400, 'the body must be a JSON object')
        return body

    def reply(self, value):
        self.set_header('Content-Type', 'application/json')
        self.finish(json.dumps(value))

    def context_or_404(self, context_id):
        context = self.contexts.get(context_id)
        if context is None:
            raise refuse(404, f'context {context_id} not found')
        return context


def optional_string(body, field):
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise refuse(400, f'{field} must be a string')
    return value or None


class Health(Handler):
    def get(self):
        self.reply('OK')


class ContextList(Handler):
    def get(self):
        self.reply([context.describe() for context in self.contexts.all()])

    async def post(self):
        body = self.json_body()
        language = optional_string(body, 'language')
        cwd = optional_string(body, 'cwd')
        try:
            context = await self.contexts.create(language, cwd)
        except UnknownLanguage as error:
            raise refuse(400, str(error)) from None
        except NotADirectoryError as error:
            raise refuse(400, str(error)) from None
        self.reply(context.describe())


class ContextItem(Handler):
    async def delete(self, context_id):
        await self.contexts.remove(self.context_or_404(context_id))
        self.reply(None)


class ContextRestart(Handler):
    async def post(self, context_id):
        await self.context_or_404(context_id).restart()
        self.reply(None)


class Execute(Handler):
    """Runs a cell and streams what the kernel sends, one JSON object a line, each flushed as it comes."""

    def initialize(self, contexts):
        super().initialize(contexts)
        self.gone = asyncio.Event()

    def on_connection_close(self):
        # The client went away mid-stream (the SDK aborts on its timeout): the execution interrupts its kernel.
        self.gone.set()

    async def post(self):
        body = self.json_body()
        code = body.get('code')
        if not isinstance(code, str):
            raise refuse(400, 'code must be a string')
        context_id = optional_string(body, 'context_id')
        language = optional_string(body, 'language')
        env_vars = body.get('env_vars') or {}
        if not isinstance(env_vars, dict) or not all(isinstance(v, str) for v in env_vars.values()):
            raise refuse(400, 'env_vars must be an object of strings')
        bad = [name for name in env_vars if not ENV_NAME.match(name)]
        if bad:
            raise refuse(400, f'env_vars: {bad[0]!r} is not a variable name')
        if context_id and language:
            raise refuse(400, 'give context_id or language, not both')
        if context_id:
            context = self.context_or_404(context_id)
        else:
            try:
                context = await self.contexts.default(language)
            except UnknownLanguage as error:
                raise refuse(400, str(error)) from None

        self.set_header('Content-Type', 'application/x-ndjson')
        self.set_header('Cache-Control', 'no-store')
        try:
            # Headers now: the SDK's body timeout starts when they arrive, not when the kernel is free.
            await self.flush()
            try:
                await context.execute(code, env_vars, self.emit, self.gone)
            except StreamClosedError:
                raise
            except Exception as error:  # noqa: BLE001 (the status is sent: the stream itself must say it failed)
                log.exception('execution in %s failed', context.id)
                await self.emit({'type': 'error', 'name': 'ServerError', 'value': str(error), 'traceback': ''})
            await self.emit({'type': 'end_of_execution'})
            self.finish()
        except StreamClosedError:
            log.info('client of an execution in %s went away', context.id)

    async def emit(self, message):
        if self.gone.is_set():
            raise StreamClosedError()
        self.write(json.dumps(message) + '\n')
        await self.flush()


class NotFound(Handler):
    def prepare(self):
        raise refuse(404, f'no route {self.request.method} {self.request.path}')


async def main():
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format='%(asctime)s %(levelname)s %(message)s')
    contexts = Contexts()
    # The port opens only once Python is ready: brig.ready-port then means "runCode works now".
    await contexts.default('python')
    log.info('default python context ready')
    args = {'contexts': contexts}
    app = Application([
        (r'/health', Health, args),
        (r'/execute', Execute, args),
        (r'/contexts', ContextList, args),
        (r'/contexts/([^/]+)', ContextItem, args),
        (r'/contexts/([^/]+)/restart', ContextRestart, args),
    ], default_handler_class=NotFound, default_handler_args=args)
    # Every address, IPv4 and IPv6 (localhost may be ::1); idle_connection_timeout: the SDK
    # keeps connections alive between calls, as E2B's 640 s does
    app.listen(PORT, address='', idle_connection_timeout=640)
    log.info('listening on %d', PORT)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    # No kernel is left behind: each is a process group of its own.
    await contexts.shutdown()


if __name__ == '__main__':
    asyncio.run(main())
