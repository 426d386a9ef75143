"""Run a test in a forked child: Oracle DTrace 2.x allows one consumer per
process (see smartos_telemetry/engines/dtrace/consumer.py)."""

import functools
import os
import traceback


def in_own_process(test):
    """Run the test body in a forked child.

    Oracle DTrace 2.x allows one consumer per process (see consumer.py), so
    every test that opens one gets a fresh process.  The child's failure,
    with its traceback, becomes the test's failure.
    """

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(read_end)
            status = 0
            try:
                test(*args, **kwargs)
            except BaseException:
                os.write(write_end, traceback.format_exc().encode())
                status = 1
            os._exit(status)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as f:
            report = f.read().decode()
        _, status = os.waitpid(child, 0)
        if status != 0:
            raise AssertionError(f"test failed in its own process (status {status}):\n{report}")

    return wrapper
