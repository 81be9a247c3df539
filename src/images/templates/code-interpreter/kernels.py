"""brig's Jupyter kernels for JavaScript, TypeScript and bash.

Debian ships no Jupyter kernel for them, so these are ipykernel "wrapper
kernels" around one persistent process each (a node REPL, node_repl.mjs, or
a bash): variables, functions and the working directory live from cell to
cell. Being real kernels, the code-interpreter server drives them exactly as
it drives Python's, and the notebook UI on 8888 offers them too.

Launched from their kernelspecs (kernelspecs/*/kernel.json) as
    python3 /opt/code-interpreter/kernels.py -f CONNECTION_FILE
with BRIG_KERNEL_LANGUAGE = javascript | typescript | bash.

Interrupts: jupyter_client signals the kernel's whole process group with
SIGINT, and the child stays in that group, so it gets the signal directly
(node stops the cell, bash's trap returns from it) while do_execute, woken
by KeyboardInterrupt, waits a little for the child's reply. A child that
does not answer is killed and started again, and the cell says its state
was lost.
"""

import codecs
import json
import os
import queue
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

import psutil
from ipykernel.kernelapp import IPKernelApp
from ipykernel.kernelbase import Kernel

HERE = os.path.dirname(os.path.abspath(__file__))
# How long an interrupted child has to answer before it is killed and restarted.
INTERRUPT_GRACE_S = 5.0


def default_sigint():
    # ipykernel ignores SIGINT outside its handlers, and an ignored signal is
    # inherited: bash could not trap it, nor a command stop on it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Child:
    """A process whose stdout and stderr are streamed as they come and whose replies are lines on a pipe of their own."""

    def __init__(self, argv, publish, request_pipe):
        self.publish = publish
        self.replies = queue.Queue()
        reply_r, reply_w = os.pipe()
        env = dict(os.environ, BRIG_REPLY_FD=str(reply_w))
        pass_fds = [reply_w]
        if request_pipe:
            # node reads its requests from a pipe of their own: stdin stays free for the user's code
            request_r, request_w = os.pipe()
            env['BRIG_REQUEST_FD'] = str(request_r)
            pass_fds.append(request_r)
        self.proc = subprocess.Popen(
            argv, env=env, pass_fds=pass_fds, preexec_fn=default_sigint,
            stdin=subprocess.DEVNULL if request_pipe else subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        # its number in the child (pass_fds keeps numbers)
        self.child_reply_fd = reply_w
        os.close(reply_w)
        if request_pipe:
            os.close(request_r)
            self.requests = os.fdopen(request_w, 'wb')
        else:
            self.requests = self.proc.stdin
        self.reply_fd = reply_r
        threading.Thread(target=self._pump, daemon=True).start()

    def send(self, line):
        self.requests.write(line.encode('utf-8') + b'\n')
        self.requests.flush()

    def _pump(self):
        """Publishes output as it comes; a reply is queued only after the output written before it."""
        streams = {self.proc.stdout.fileno(): ('stdout', codecs.getincrementaldecoder('utf-8')('replace')),
                   self.proc.stderr.fileno(): ('stderr', codecs.getincrementaldecoder('utf-8')('replace'))}
        selector = selectors.DefaultSelector()
        for fd in (*streams, self.reply_fd):
            selector.register(fd, selectors.EVENT_READ)
        pending = b''
        while selector.get_map():
            for key, _ in selector.select():
                fd = key.fd
                data = os.read(fd, 65536)
                if not data:
                    selector.unregister(fd)
                    if fd == self.reply_fd:
                        self.replies.put(None)  # the child is gone
                    continue
                if fd in streams:
                    self._stream(streams[fd], data)
                    continue
                pending += data
                while b'\n' in pending:
                    line, pending = pending.split(b'\n', 1)
                    # What the child wrote before its reply is in the pipes already: publish it first.
                    for stream_fd, stream in streams.items():
                        self._drain(stream_fd, stream, selector)
                    self.replies.put(line.decode('utf-8', 'replace'))
        os.close(self.reply_fd)

    def _stream(self, stream, data):
        text = stream[1].decode(data)
        if text:
            self.publish(stream[0], text)

    def _drain(self, fd, stream, selector):
        if fd not in selector.get_map():
            return
        ready = selectors.DefaultSelector()
        ready.register(fd, selectors.EVENT_READ)
        while ready.select(0):
            data = os.read(fd, 65536)
            if not data:
                break
            self._stream(stream, data)
        ready.close()

    def wait_reply(self, timeout=None):
        """The next reply line, None when the child died, or TimeoutError."""
        waited = 0.0
        while timeout is None or waited < timeout:
            try:
                return self.replies.get(timeout=0.25)
            except queue.Empty:
                waited += 0.25
            # A process the child started may hold the reply pipe open after the child's end: look at the child itself.
            if self.proc.poll() is not None:
                try:
                    return self.replies.get(timeout=0.5)
                except queue.Empty:
                    return None
        raise TimeoutError

    def kill(self):
        """The child and what it started: a command that ignored the interrupt goes with the shell that ran it."""
        if self.proc.poll() is None:
            try:
                descendants = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.Error:
                descendants = []
            for process in descendants:
                try:
                    process.kill()
                except psutil.Error:
                    pass
            self.proc.kill()
        self.proc.wait()


class PipeKernel(Kernel):
    """The ipykernel side: one cell at a time to the child, its reply as execute_result or error."""

    implementation = 'brig'
    implementation_version = '1'

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.child = self.start_child()

    def start_child(self):
        raise NotImplementedError

    def request(self, code):
        """The line that runs code in the child."""
        raise NotImplementedError

    def outcome(self, reply):
        """The child's reply line as ('ok', text or None) or ('error', name, value, traceback)."""
        raise NotImplementedError

    def _publish_stream(self, name, text):
        self.send_response(self.iopub_socket, 'stream', {'name': name, 'text': text})

    def _error(self, name, value, traceback):
        content = {'ename': name, 'evalue': value, 'traceback': traceback.split('\n') if traceback else []}
        self.send_response(self.iopub_socket, 'error', content)
        return {'status': 'error', 'execution_count': self.execution_count, **content}

    def _restart_child(self, why):
        self.child.kill()
        self.child = self.start_child()
        return self._error('ContextRestarted', why, '')

    def do_execute(self, code, silent, store_history=True, user_expressions=None, allow_stdin=False):
        if self.child.proc.poll() is not None:
            self.child = self.start_child()
        try:
            self.child.send(self.request(code))
            reply = self.child.wait_reply()
        except KeyboardInterrupt:
            try:
                reply = self.child.wait_reply(INTERRUPT_GRACE_S)
            except (TimeoutError, KeyboardInterrupt):
                return self._restart_child(f'{self.language_info["name"]} did not stop on interrupt: it was restarted and its state is lost')
        except BrokenPipeError:
            reply = None
        if reply is None:
            status = self.child.proc.wait()
            return self._restart_child(f'{self.language_info["name"]} exited (status {status}): it was restarted and its state is lost')
        outcome = self.outcome(reply)
        if outcome[0] == 'error':
            return self._error(*outcome[1:])
        if outcome[1] is not None and not silent:
            self.send_response(self.iopub_socket, 'execute_result', {
                'execution_count': self.execution_count, 'data': {'text/plain': outcome[1]}, 'metadata': {}})
        return {'status': 'ok', 'execution_count': self.execution_count, 'payload': [], 'user_expressions': {}}

    def do_shutdown(self, restart):
        self.child.kill()
        return {'status': 'ok', 'restart': restart}


class NodeKernel(PipeKernel):
    """JavaScript (and, with typescript, TypeScript transpiled by Debian's node-typescript) in one node process."""

    def __init__(self, typescript=False, **kwargs):
        self.lang = 'typescript' if typescript else 'javascript'
        self.language_info = {
            'name': self.lang, 'mimetype': 'text/typescript' if typescript else 'application/javascript',
            'file_extension': '.ts' if typescript else '.js',
        }
        self.banner = f'brig {self.lang} kernel (node)'
        super().__init__(**kwargs)

    def start_child(self):
        return Child(['node', os.path.join(HERE, 'node_repl.mjs')], self._publish_stream, request_pipe=True)

    def request(self, code):
        return json.dumps({'code': code, 'lang': self.lang})

    def outcome(self, reply):
        message = json.loads(reply)
        if message.get('status') == 'error':
            return ('error', message.get('name', 'Error'), message.get('value', ''), message.get('traceback', ''))
        return ('ok', message.get('text'))


# bash runs each cell by sourcing it, at top level (so declare, cd and
# functions persist), with stdin from /dev/null (its own stdin carries our
# requests) and without the reply pipe (a job the cell leaves running must
# not hold it, or the shell's end would never be seen). While a cell runs,
# SIGINT returns from it (status 130); between cells SIGINT is ignored, so a
# stray interrupt never ends the shell.
BASH_SETUP = "trap '' INT; PS1=; PS2=; unset PROMPT_COMMAND"
BASH_RUN = ("trap 'trap \"\" INT; return 130' INT; . {cell} </dev/null {reply}>&-; __brig_status=$?; "
            "trap '' INT; printf '%s\\n' \"$__brig_status\" >&{reply}")


class BashKernel(PipeKernel):
    """bash: one shell per context."""

    language_info = {'name': 'bash', 'mimetype': 'text/x-sh', 'file_extension': '.sh'}
    banner = 'brig bash kernel'

    def __init__(self, **kwargs):
        self.cells = tempfile.mkdtemp(prefix='brig-bash-')
        super().__init__(**kwargs)

    def start_child(self):
        child = Child(['bash', '--noprofile', '--norc'], self._publish_stream, request_pipe=False)
        child.send(BASH_SETUP)
        return child

    def request(self, code):
        cell = os.path.join(self.cells, 'cell.sh')
        with open(cell, 'w', encoding='utf-8') as file:
            file.write(code + '\n')
        return BASH_RUN.format(cell=shlex.quote(cell), reply=self.child.child_reply_fd)

    def outcome(self, reply):
        status = int(reply.strip() or '0')
        if status == 0:
            return ('ok', None)
        # As Jupyter's bash_kernel: a failing last command is an error whose value is its exit status.
        return ('error', 'ExitCode', str(status), f'the cell\'s last command exited with status {status}')

    def do_shutdown(self, restart):
        shutil.rmtree(self.cells, ignore_errors=True)
        return super().do_shutdown(restart)


class TypeScriptKernel(NodeKernel):
    def __init__(self, **kwargs):
        super().__init__(typescript=True, **kwargs)


KERNELS = {'javascript': NodeKernel, 'typescript': TypeScriptKernel, 'bash': BashKernel}


if __name__ == '__main__':
    # The variable is the kernelspec's: the children must not see it.
    kernel = KERNELS[os.environ.pop('BRIG_KERNEL_LANGUAGE', 'javascript')]
    IPKernelApp.launch_instance(kernel_class=kernel)
    sys.exit(0)
