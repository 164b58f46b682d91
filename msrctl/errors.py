"""Exit codes and the one exception type the CLI turns into a one-line message.

Codes follow msr-tools' rdmsr/wrmsr where the meanings overlap (2: no such
CPU, 4: the MSR access faulted); the rest are ours.  msr-tools exits 127 on
usage errors; we use 64 (sysexits EX_USAGE) because 127 means "command not
found" to shells.
"""

from __future__ import annotations

# Here rather than in admin/system.py, so that the CLI's start-up does not load that.
DEFAULT_DEVICE = "/dev/msrdrv"

OK = 0
FAILURE = 1  # anything not listed below
NO_CPU = 2  # msr-tools: "No CPU N"
PERMISSION = 3  # cannot open the device, op refused, or root needed
IO_ERROR = 4  # msr-tools: the MSR access faulted (-EIO)
NOT_LOADED = 5  # msrdrv not loaded or /dev/msrdrv missing
MODULE = 6  # load/unload failed: module missing, unsigned, no module support, in use
NO_PMU = 7  # msrctl stat: no usable performance-monitoring unit, or too few free counters
USAGE = 64  # bad command line, number, register name, CPU list or batch file
UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE: msrctl exporter cannot listen on its address

EXIT_CODES: dict[int, str] = {
    OK: "success",
    FAILURE: "other failure",
    NO_CPU: "no such CPU, or it is offline (as rdmsr/wrmsr)",
    PERMISSION: "permission denied: device, open mode, write policy, allowlist, or root needed",
    IO_ERROR: "the MSR access faulted: not implemented or value rejected (as rdmsr/wrmsr)",
    NOT_LOADED: "msrdrv module not loaded or its device node missing",
    MODULE: "loading or unloading the module failed",
    NO_PMU: "no usable PMU (msrctl stat), or not enough free counters",
    USAGE: "usage error: bad option, number, register name, CPU list or batch file",
    UNAVAILABLE: "msrctl exporter cannot listen: the port is in use or the address is not this machine's",
}


# What a group member asks an admin for when no allowlist is loaded: one
# source for the library's, the CLI's and `msrctl status`'s advice.
LOAD_PROFILE = "sudo msrctl allowlist load --profile "
LOAD_TELEMETRY = LOAD_PROFILE + "telemetry"
ASK_FOR_LIST = f"ask an admin to run: {LOAD_TELEMETRY}"


def exit_codes_help() -> str:
    """The exit-code table as one paragraph, which every help renderer keeps readable."""
    return "Exit status: " + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items()) + "."


class MsrctlError(Exception):
    """A failure explained as what went wrong, why, and what to do about it."""

    def __init__(self, what: str, why: str, fix: str = "", code: int = FAILURE) -> None:
        self.what = what
        self.why = why
        self.fix = fix
        self.code = code
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = f"{self.what}: {self.why}"
        return f"{text}; {self.fix}" if self.fix else text

    def at(self, where: str) -> MsrctlError:
        """The same error located in an input file (`ops.txt:3`)."""
        return MsrctlError(f"{where}: {self.what}", self.why, self.fix, self.code)


class UsageError(MsrctlError):
    """Input the user can correct: a malformed number, unknown name, bad list."""

    def __init__(self, what: str, why: str, fix: str = "") -> None:
        super().__init__(what, why, fix, USAGE)

    def at(self, where: str) -> UsageError:
        return UsageError(f"{where}: {self.what}", self.why, self.fix)
