"""Contexts of the code-interpreter server: one Jupyter kernel each.

A context is a kernel started with jupyter_client's AsyncKernelManager in
the context's working directory, and one execution at a time (a lock): the
execution's iopub messages (those whose parent is its execute_request) are
turned into E2B's output messages as they arrive, until the kernel says it
is idle again.
"""

import asyncio
import json
import logging
import os
import queue
import shlex
import uuid

from jupyter_client.manager import AsyncKernelManager
from tornado.iostream import StreamClosedError

log = logging.getLogger('code-interpreter')

# language -> kernelspec: Debian's python3, brig's own (kernelspecs/) for the others
KERNELS = {'python': 'python3', 'javascript': 'javascript', 'typescript': 'typescript', 'bash': 'bash'}
ALIASES = {'py': 'python', 'python3': 'python', 'js': 'javascript', 'node': 'javascript', 'ts': 'typescript', 'sh': 'bash'}
# What E2B's results call the MIME types a kernel sends; others go to the result as they are.
RESULT_FIELDS = {
    'text/plain': 'text', 'text/html': 'html', 'text/markdown': 'markdown', 'image/svg+xml': 'svg',
    'image/png': 'png', 'image/jpeg': 'jpeg', 'application/pdf': 'pdf', 'text/latex': 'latex',
    'application/json': 'json', 'application/javascript': 'javascript',
}
# Python kernels: tracebacks without ANSI colours (as E2B's), whole reprs of long lists.
PYTHON_ARGUMENTS = ['--InteractiveShell.colors=NoColor', '--PlainTextFormatter.max_seq_length=0']
READY_TIMEOUT_S = 120
# A silent kernel is told every few seconds that the client is still there: a line the SDK ignores, as E2B's keepalive.
KEEPALIVE_S = 5
# After an interrupt, how long the kernel has to stop before it is restarted.
INTERRUPT_GRACE_S = 10
# How often an execution waiting on its kernel looks whether its client left.
POLL_S = 0.2


class UnknownLanguage(Exception):
    pass


def normalize(language):
    name = (language or 'python').strip().lower()
    name = ALIASES.get(name, name)
    if name not in KERNELS:
        raise UnknownLanguage(f'language {language!r} is not supported: {", ".join(KERNELS)}')
    return name


def result_message(content, is_main_result):
    """A display_data or execute_result bundle as E2B's result message."""
    message = {'type': 'result', 'is_main_result': is_main_result}
    extra = {}
    for mime, value in content.get('data', {}).items():
        field = RESULT_FIELDS.get(mime)
        if field is None:
            extra[mime] = value
        else:
            message[field] = value
    text = message.get('text')
    # As E2B: a string's repr comes back without its quotes ('a' -> a)
    if isinstance(text, str) and len(text) >= 2 and text[0] == text[-1] and text[0] in '\'"':
        message['text'] = text[1:-1]
    if extra:
        message['extra'] = extra
    return message


def env_code(language, assign, remove):
    """Code that sets the variables of assign and unsets those of remove, in the context's language."""
    if language == 'python':
        return f"(lambda e: (e.update({json.dumps(assign)}), [e.pop(k, None) for k in {json.dumps(remove)}]))(__import__('os').environ)"
    if language in ('javascript', 'typescript'):
        return f'Object.assign(process.env, {json.dumps(assign)}); for (const k of {json.dumps(remove)}) delete process.env[k];'
    parts = [f'export {name}={shlex.quote(value)}' for name, value in assign.items()] + [f'unset {name}' for name in remove]
    return '; '.join(parts) + '; true'


class Context:
    def __init__(self, language, cwd):
        self.id = str(uuid.uuid4())
        self.language = language
        self.cwd = cwd
        # The environment kernels start with: env_vars of one execution are put back to it afterwards.
        self.base_env = dict(os.environ)
        if language == 'python':
            # ipykernel's inline backend (its default too): plt.show() and a cell's last figure come back as PNG results
            self.base_env.setdefault('MPLBACKEND', 'module://matplotlib_inline.backend_inline')
        self.manager = AsyncKernelManager(kernel_name=KERNELS[language])
        self.client = None
        self.lock = asyncio.Lock()
        # Bumped by every restart: an execution waiting on the previous kernel ends.
        self.generation = 0
        self.removed = False

    def describe(self):
        return {'id': self.id, 'language': self.language, 'cwd': self.cwd}

    async def start(self):
        await self.manager.start_kernel(cwd=self.cwd, env=dict(self.base_env),
                                        extra_arguments=PYTHON_ARGUMENTS if self.language == 'python' else [])
        self.client = self.manager.client()
        self.client.start_channels()
        await self.client.wait_for_ready(timeout=READY_TIMEOUT_S)

    async def restart(self):
        self.generation += 1
        await self.manager.restart_kernel(now=True)
        await self.client.wait_for_ready(timeout=READY_TIMEOUT_S)

    async def shutdown(self):
        self.removed = True
        self.generation += 1
        if self.client is not None:
            self.client.stop_channels()
        await self.manager.shutdown_kernel(now=True)

    async def execute(self, code, env_vars, emit, gone):
        """Runs code, calling emit with each output message; interrupts the kernel when the client is gone."""
        async with self.lock:
            # The client may have left while an earlier execution had the kernel: its code never starts.
            if gone.is_set():
                raise StreamClosedError()
            if self.removed:
                await emit({'type': 'error', 'name': 'ContextRemoved', 'value': 'the context was removed', 'traceback': ''})
                return
            if env_vars:
                await self._silent(env_code(self.language, env_vars, []))
            try:
                await self._run(code, emit, gone)
            finally:
                if env_vars and not self.removed:
                    restore = {k: self.base_env[k] for k in env_vars if k in self.base_env}
                    await self._silent(env_code(self.language, restore, [k for k in env_vars if k not in self.base_env]))

    async def _run(self, code, emit, gone):
        generation = self.generation
        # stop_on_error=False: one execution at a time already, and with True the kernel aborts, for a
        # moment after an error (an interrupt's too), the execution that follows: the next call came back empty.
        msg_id = self.client.execute(code, store_history=True, allow_stdin=False, stop_on_error=False)
        started = False
        loop = asyncio.get_running_loop()
        heard = loop.time()
        try:
            while True:
                if gone.is_set():
                    raise StreamClosedError()
                if generation != self.generation:
                    # (for a restart: E2B's name and words)
                    name, value = ('ContextRemoved', 'the context was removed') if self.removed else ('ContextRestarting', 'Context was restarted')
                    await emit({'type': 'error', 'name': name, 'value': value, 'traceback': ''})
                    return
                try:
                    message = await self.client.get_iopub_msg(timeout=POLL_S)
                except (Exception, asyncio.CancelledError) as error:
                    # A removal closes the channel under this wait (its future is cancelled): the loop says so
                    if self.removed:
                        continue
                    if not isinstance(error, queue.Empty):
                        raise
                    if not await self.manager.is_alive():
                        await emit({'type': 'error', 'name': 'ContextRestarted', 'value': 'the kernel died: it was restarted and its state is lost', 'traceback': ''})
                        await self.restart()
                        return
                    if loop.time() - heard >= KEEPALIVE_S:
                        heard = loop.time()
                        await emit({'type': 'keepalive'})
                    continue
                if message['parent_header'].get('msg_id') != msg_id:
                    continue
                heard = loop.time()
                output = self._output(message)
                if output == 'idle':
                    if not started:
                        # Idle without ever starting: the kernel aborted it (E2B's name and words)
                        await emit({'type': 'error', 'name': 'ExecutionAborted', 'value': 'Execution was aborted', 'traceback': ''})
                    return
                started = started or message['msg_type'] == 'execute_input'
                if output is not None:
                    await emit(output)
        except (StreamClosedError, asyncio.CancelledError):
            if not self.removed:
                await self._interrupt(msg_id)
            raise
        finally:
            if not self.removed:
                await self._drain_shell()

    def _output(self, message):
        kind = message['msg_type']
        content = message['content']
        if kind == 'status':
            return 'idle' if content.get('execution_state') == 'idle' else None
        if kind == 'execute_input':
            return {'type': 'number_of_executions', 'execution_count': content.get('execution_count')}
        if kind == 'stream':
            return {'type': 'stderr' if content.get('name') == 'stderr' else 'stdout', 'text': content.get('text', '')}
        if kind == 'display_data':
            return result_message(content, False)
        if kind == 'execute_result':
            return result_message(content, True)
        if kind == 'error':
            return {'type': 'error', 'name': content.get('ename', ''), 'value': content.get('evalue', ''),
                    'traceback': '\n'.join(content.get('traceback', []))}
        return None

    async def _interrupt(self, msg_id):
        """The client left mid-execution: interrupt, wait for the kernel to be idle, restart it if it will not."""
        log.info('client gone: interrupting %s', self.id)
        await self.manager.interrupt_kernel()
        if not await self._until_idle(msg_id, INTERRUPT_GRACE_S):
            log.warning('%s did not stop on interrupt: restarting it', self.id)
            await self.restart()

    async def _until_idle(self, msg_id, seconds):
        """Reads iopub until the kernel is idle after msg_id (True), or for `seconds` at most (False); errors are logged."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline:
            try:
                message = await self.client.get_iopub_msg(timeout=POLL_S)
            except queue.Empty:
                continue
            if message['parent_header'].get('msg_id') != msg_id:
                continue
            if message['msg_type'] == 'error':
                log.warning('%s: %s: %s', self.id, message['content'].get('ename'), message['content'].get('evalue'))
            if self._output(message) == 'idle':
                return True
        return False

    async def _drain_shell(self):
        """Reads the execute replies nobody waits for, so they do not pile up."""
        while True:
            try:
                await self.client.get_shell_msg(timeout=0)
            except queue.Empty:
                return

    async def _silent(self, code):
        """Runs code the user does not see (environment variables), to its end."""
        msg_id = self.client.execute(code, silent=True, store_history=False, allow_stdin=False)
        if not await self._until_idle(msg_id, INTERRUPT_GRACE_S):
            log.warning('%s: no answer to setting environment variables', self.id)


class Contexts:
    """Every context by id, and the default one of each language (made on first use)."""

    def __init__(self):
        self.by_id = {}
        self.defaults = {}
        self.creating = {}
        self.home = os.path.expanduser('~')

    def get(self, context_id):
        return self.by_id.get(context_id)

    def all(self):
        return list(self.by_id.values())

    async def create(self, language, cwd):
        name = normalize(language)
        cwd = cwd or self.home
        if not os.path.isdir(cwd):
            raise NotADirectoryError(f'cwd {cwd} is not a directory')
        context = Context(name, cwd)
        try:
            await context.start()
        except BaseException:
            await context.shutdown()
            raise
        self.by_id[context.id] = context
        log.info('context %s: %s in %s', context.id, name, cwd)
        return context

    async def default(self, language):
        """The language's default context, started once even when requests for it come together."""
        name = normalize(language)
        context = self.defaults.get(name)
        if context is not None and context.id in self.by_id:
            return context
        if name not in self.creating:
            self.creating[name] = asyncio.ensure_future(self.create(name, None))
        try:
            context = await asyncio.shield(self.creating[name])
        finally:
            self.creating.pop(name, None)
        self.defaults[name] = context
        return context

    async def remove(self, context):
        self.by_id.pop(context.id, None)
        await context.shutdown()

    async def shutdown(self):
        await asyncio.gather(*(context.shutdown() for context in self.all()), return_exceptions=True)
