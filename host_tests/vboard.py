# A virtual board for deploy tests: the MicroPython unix port's REPL on a pseudo-terminal
# (socat), its working directory standing in for the board's filesystem.
import os
import shutil
import signal
import subprocess
import sys
import time

from harness import FirmwareProcess, tool

# Run before the REPL of a "full" board: a small littlefs in RAM becomes its filesystem.
SMALL_FLASH = """
import vfs, os
class RAMDisk:
    def __init__(self, blocks, size=512):
        self.size = size
        self.data = bytearray(blocks * size)
    def readblocks(self, n, buf, off=0):
        a = n * self.size + off
        buf[:] = self.data[a:a + len(buf)]
    def writeblocks(self, n, buf, off=0):
        a = n * self.size + off
        self.data[a:a + len(buf)] = buf
    def ioctl(self, op, arg):
        if op == 4:
            return len(self.data) // self.size
        if op == 5:
            return self.size
        if op == 6:
            return 0
bd = RAMDisk(%d)
vfs.VfsLfs2.mkfs(bd)
vfs.mount(vfs.VfsLfs2(bd), '/flash')
os.chdir('/flash')
"""

# Run before the REPL of a board whose root is its directory: "/" on it is DIR/board, as "/" on
# an ESP32 is its flash, so `mip install --target /` lands where a board has its files.
BOARD_ROOT = """
import vfs, os
vfs.umount('/')
vfs.mount(vfs.VfsPosix(%r), '/')
os.chdir('/')
"""


class VirtualBoard:
    """socat links DIR/ttyV to `micropython -i` running in DIR/board (or in a RAM disk)."""

    def __init__(self, tmp_path, program=None, flash_blocks=None, root=False):
        self.dir = str(tmp_path)
        self.fs = os.path.join(self.dir, "board")
        os.makedirs(self.fs, exist_ok=True)
        # The unix port has no machine.Pin: the virtual board's "hardware" is the simulated
        # pins, present on its filesystem as a real board's pins are in its silicon. They are
        # not part of any deploy (tools/build.py), so a deploy never copies nor removes them.
        from harness import ROOT
        os.makedirs(os.path.join(self.fs, "host"), exist_ok=True)
        for name in ("__init__.py", "simpins.py", "console.py"):
            shutil.copy(os.path.join(ROOT, "host", name), os.path.join(self.fs, "host", name))
        self.device = os.path.join(self.dir, "ttyV")
        micropython = program is None
        if micropython:
            cmd = tool("micropython") + " -i"
            setup = None
            if flash_blocks:
                setup = os.path.join(self.dir, "small_flash.py")
                with open(setup, "w") as f:
                    f.write(SMALL_FLASH % flash_blocks)
            elif root:
                setup = os.path.join(self.dir, "board_root.py")
                with open(setup, "w") as f:
                    f.write(BOARD_ROOT % self.fs)
            if setup:
                cmd += " " + setup
            program = cmd
        # No `setsid` for the child: socat and it share the process group we kill at the end.
        self.proc = subprocess.Popen(
            [tool("socat"), "PTY,link=%s,raw,echo=0" % self.device,
             "EXEC:%s,pty,stderr,raw,echo=0" % program],
            cwd=self.fs, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.device):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("socat did not create %s: %s" % (
                    self.device, self.proc.stderr.read().decode(errors="replace")))
            time.sleep(0.02)  # polling for the link to appear, bounded by the deadline
        if micropython:
            self._wait_for_prompt(deadline)

    def _wait_for_prompt(self, deadline):
        # MicroPython flushes pending input when it puts its terminal in raw mode: talking to it
        # before its first prompt could lose mpremote's Ctrl-A. So wait for ">>> ".
        import select
        fd = os.open(self.device, os.O_RDWR | os.O_NOCTTY)
        seen = b""
        try:
            while b">>> " not in seen:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    self.close()
                    raise RuntimeError("the virtual board never showed its prompt: %r" % seen[-300:])
                if select.select([fd], [], [], left)[0]:
                    seen += os.read(fd, 1024)
        finally:
            os.close(fd)

    def deploy(self, *args, timeout=60):
        """Run tools/deploy.py against this board; returns the CompletedProcess."""
        from harness import ROOT
        cmd = [sys.executable, os.path.join(ROOT, "tools", "deploy.py"), "--device", self.device]
        return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout)

    def close(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc.stderr.close()


class BoardProcess(FirmwareProcess):
    """main.py run the way a board runs it: from the board's directory, with only the deployed
    files (no COAP_ALARM_CONFIG, no MICROPYPATH into the repository)."""

    def __init__(self, board_dir, port):
        super().__init__(board_dir, {"port": port})

    def start(self, timeout=10):
        import threading
        env = {k: v for k, v in os.environ.items() if k not in ("COAP_ALARM_CONFIG", "MICROPYPATH")}
        self.proc = subprocess.Popen([tool("micropython"), "main.py"], cwd=self.workdir, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=self._pump, daemon=True).start()
        self.wait_for("serving coap://", timeout)
        return self
