"""xenapid's stand-in for xapi's storage-manager `util` module: running
commands (pread, pread2, pread3, doexec), logging to the SM log (SMlog),
uuids and the exceptions plugins catch. The interface (names, arguments,
return values, exception attributes) is sm's; the code is xenapid's."""

import errno
import os
import re
import stat
import subprocess
import sys
import syslog
import time
import traceback
import uuid as _uuid

NO_LOGGING_STAMPFILE = "/etc/xensource/no_sm_log"
IORETRY_MAX = 20  # attempts
IORETRY_PERIOD = 1.0  # seconds

LOG_EMERG = syslog.LOG_EMERG
LOG_ALERT = syslog.LOG_ALERT
LOG_CRIT = syslog.LOG_CRIT
LOG_ERR = syslog.LOG_ERR
LOG_WARNING = syslog.LOG_WARNING
LOG_NOTICE = syslog.LOG_NOTICE
LOG_INFO = syslog.LOG_INFO
LOG_DEBUG = syslog.LOG_DEBUG
_FACILITY = syslog.LOG_LOCAL2  # where a XenServer host's syslog makes /var/log/SMlog from

# Besides syslog, SMlog appends to this file when set (a host without an
# SMlog syslog rule, or tests).
SMLOG_FILE_ENV = "XENAPID_SMLOG_FILE"

LOGGING = not os.path.exists(NO_LOGGING_STAMPFILE)


class SMException(Exception):
    """Base of the storage-manager exceptions."""


class CommandException(SMException):
    """A command failed: code is its exit status (negative: the signal that
    killed it), cmd the command as a string, reason its stderr (or stdout
    when stderr was empty)."""

    def __init__(self, code, cmd="", reason="exec failed"):
        self.code = code
        self.cmd = cmd
        self.reason = reason
        Exception.__init__(self, self.error_message(code))

    @staticmethod
    def error_message(code):
        if code > 0:
            return os.strerror(code)
        if code < 0:
            return "Signalled %s" % abs(code)
        return "Success"


class SRBusyException(SMException):
    """The SR could not be locked."""


def _log_file_line(ident, line):
    path = os.environ.get(SMLOG_FILE_ENV)
    if not path:
        return
    stamp = time.strftime("%b %d %H:%M:%S")
    try:
        with open(path, "a") as f:
            f.write("%s %s[%d] %s\n" % (stamp, ident, os.getpid(), line))
    except OSError:
        pass  # logging never fails the operation


def SMlog(message, ident="SM", priority=LOG_INFO):
    """Logs message, one syslog record per line, to facility local2 as `ident`."""
    if not LOGGING:
        return
    for line in str(message).split("\n"):
        syslog.openlog(ident, 0, _FACILITY)
        syslog.syslog(priority, "[%d] %s" % (os.getpid(), line))
        syslog.closelog()
        _log_file_line(ident, line)


def logException(tag):
    info = sys.exc_info()
    if info[0] is SystemExit:
        sys.exit(0)
    SMlog("***** %s: EXCEPTION %s, %s\n%s" % (tag, info[0], info[1], "".join(traceback.format_tb(info[2]))))


def doexec(args, inputtext=None, new_env=None, text=True):
    """Runs args; (returncode, stdout, stderr)."""
    env = None
    if new_env:
        env = dict(os.environ)
        env.update(new_env)
    if not text and isinstance(inputtext, str):
        inputtext = inputtext.encode()
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            close_fds=True, env=env, universal_newlines=text)
    stdout, stderr = proc.communicate(inputtext)
    return proc.returncode, stdout, stderr


def is_string(value):
    return isinstance(value, str)


def _split_for_log(cmdlist, scramble):
    run, shown = [], []
    for item in cmdlist:
        if is_string(item):
            run.append(item)
            shown.append("<filtered out>" if scramble and scramble in item else item)
        else:  # (what runs, what is logged)
            run.append(item[0])
            shown.append(item[1])
    return run, shown


def pread(cmdlist, close_stdin=False, scramble=None, expect_rc=0, quiet=False, new_env=None, text=True):
    """Runs cmdlist and returns its stdout. An exit status other than
    expect_rc raises CommandException(status, str(cmdlist), stderr stripped,
    or stdout when stderr is empty). A missing program raises OSError, as
    subprocess does."""
    run, shown = _split_for_log(cmdlist, scramble)
    if not quiet:
        SMlog(shown)
    rc, stdout, stderr = doexec(run, new_env=new_env, text=text)
    if rc != expect_rc:
        SMlog("FAILED in util.pread: (rc %d) stdout: '%s', stderr: '%s'" % (rc, stdout, stderr))
        if quiet:
            SMlog("Command was: %s" % shown)
        if not stderr:
            stderr = stdout
        raise CommandException(rc, str(cmdlist), stderr.strip())
    if not quiet:
        SMlog("  pread SUCCESS")
    return stdout


def pread2(cmdlist, quiet=False, text=True):
    """pread with the defaults: stdout of cmdlist, CommandException on a non-zero status."""
    return pread(cmdlist, quiet=quiet, text=text)


def pread3(cmdlist, text):
    """Runs cmdlist with `text` on its stdin; stdout, or CommandException."""
    SMlog(cmdlist)
    rc, stdout, stderr = doexec(cmdlist, text)
    if rc:
        SMlog("FAILED in util.pread3: (errno %d) stdout: '%s', stderr: '%s'" % (rc, stdout, stderr))
        if not stderr:
            stderr = stdout
        raise CommandException(rc, str(cmdlist), stderr.strip())
    SMlog("  pread3 SUCCESS")
    return stdout


def ioretry(f, errlist=(errno.EIO,), maxretry=IORETRY_MAX, period=IORETRY_PERIOD, **ignored):
    """Calls f until it returns, retrying while it fails with a code in
    errlist (OSError errno or CommandException code); other failures raise
    CommandException at once, exhaustion CommandException(ETIMEDOUT)."""
    for _ in range(maxretry):
        try:
            return f()
        except OSError as e:
            if e.errno not in errlist:
                raise CommandException(e.errno, str(f), "OSError")
        except CommandException as e:
            if int(e.code) not in errlist:
                raise
        time.sleep(period)
    raise CommandException(errno.ETIMEDOUT, str(f), "Timeout")


def gen_uuid():
    """A random (version 4) uuid, lower case with dashes."""
    return str(_uuid.uuid4())


_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def match_uuid(s):
    return re.compile("^" + _UUID).search(s, 0)


def exactmatch_uuid(s):
    return re.compile("^" + _UUID + "$").search(s, 0)


def findall_uuid(s):
    return re.compile(_UUID).findall(s, 0)


def roundup(divisor, value):
    """value rounded up to a multiple of divisor (0 counts as 1)."""
    if value == 0:
        value = 1
    if value % divisor:
        return (int(value) // divisor + 1) * divisor
    return value


def listdir(path, quiet=False):
    """Names in path, as `ls -1` lists them; CommandException(EIO) when path is missing."""
    try:
        text = pread2(["ls", path, "-1", "--color=never"], quiet=quiet)[:-1]
    except CommandException as e:
        raise CommandException(errno.EIO if e.code == errno.ENOENT else e.code, e.cmd, e.reason)
    return text.split("\n") if text else []


def _stat_or_eio(stat_fn, name, path):
    """stat_fn(path), None if path is missing; an I/O error raises CommandException(EIO)."""
    try:
        return stat_fn(path)
    except OSError as e:
        if e.errno == errno.EIO:
            raise CommandException(errno.EIO, "%s(%s)" % (name, path), "failed")
        return None


def pathexists(path):
    return _stat_or_eio(os.lstat, "os.lstat", path) is not None


def isdir(path):
    st = _stat_or_eio(os.stat, "os.stat", path)
    return st is not None and stat.S_ISDIR(st.st_mode)


def force_unlink(path):
    try:
        os.unlink(path)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
