"""`batchgen simulator`'s options: how it serves, the account it keeps, its timing and
the faults it plays (their words are `simconfig`'s), with its help epilog.
"""

from __future__ import annotations

from .config import API_KEY_ENV, BASE_URL_ENV
from .money import PRICE_MICRO
from .parser import Parser, number, whole, words
from .simconfig import (
    FAULT_WORDS,
    FAULTS,
    FILE_ANSWERS,
    FORMATS,
    STATUS_ANSWERS,
    is_fault,
    is_file_answer,
    is_status_answer,
)

__all__ = ["SIMULATOR_EPILOG", "simulator_options"]

SIMULATOR_EPILOG = f"""\
environment:
  {API_KEY_ENV}: not read. Clients may send any non-empty x-api-key (only K with
  --key K); a missing key is answered 401. Point batchgen at it with --base-url
  URL or {BASE_URL_ENV}=URL.

exit codes:
  0  stopped with Ctrl-C
  2  an option is wrong, or the port cannot be listened on

examples:
  batchgen simulator --port 8765 --latency 2 --credits 0.1
  batchgen simulator --fault-rate 0.2 --seed 7       # 500s, 429s, timeouts, garbage
  batchgen simulator --fault-script 503,503,200 --format url"""


def simulator_options(sim: Parser) -> None:
    serve = sim.add_argument_group("serving")
    serve.add_argument("--host", default="127.0.0.1", metavar="HOST",
                       help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=whole(0, 65535), default=8765, metavar="PORT",
                       help="port (default 8765; 0: any free port)")
    serve.add_argument("--key", metavar="K", help="accept only this key (default: any)")
    serve.add_argument("--format", choices=FORMATS, default="raw", dest="response_format",
                       metavar="|".join(FORMATS),
                       help="how a success is delivered: image bytes, {image: base64}, "
                            "{output: url}, rotating (default raw)")
    serve.add_argument("--image-size", type=whole(1), default=96, metavar="PX",
                       help="pixels on the long side (default 96)")

    account = sim.add_argument_group("the account")
    account.add_argument("--credits", type=number(0), metavar="USD",
                         help="balance in dollars; 406 when it cannot pay (default unlimited)")
    account.add_argument("--price", type=number(0), default=PRICE_MICRO / 1_000_000,
                         metavar="USD", help="dollars per image of a model outside "
                                             "the registry (default 0.019)")
    account.add_argument("--rpm", type=whole(1), metavar="N",
                         help="requests per window before 429 (default no limit)")
    account.add_argument("--rate-window", type=number(0, above=True), default=60.0,
                         metavar="S", help="seconds of the --rpm window (default 60)")
    account.add_argument("--no-credits-endpoint", action="store_true",
                         help="answer 404 to GET /v1/get-user-credits")
    account.add_argument("--credits-delay", type=number(0), default=0.0, metavar="S",
                         help="seconds GET /v1/get-user-credits takes (default 0)")

    timing = sim.add_argument_group("timing")
    timing.add_argument("--latency", type=number(0), default=0.0, metavar="S",
                        help="seconds per image (default 0)")
    timing.add_argument("--jitter", type=number(0), default=0.0, metavar="S",
                        help="± seconds of random extra latency (default 0)")
    timing.add_argument("--queue-delay", type=number(0), default=0.0, metavar="S",
                        help="v2: seconds a request stays QUEUED (default 0)")
    timing.add_argument("--result-ttl", type=number(0), default=3600.0, metavar="S",
                        help="v2: seconds a result stays available (default 3600)")
    timing.add_argument("--hang", type=number(0), default=3600.0, metavar="S",
                        help="seconds a 'timeout' fault keeps the client waiting, and a "
                             "'late' one holds back a billed answer (default 3600)")

    faults = sim.add_argument_group("faults")
    faults.add_argument("--fault-rate", type=number(0, maximum=1), default=0.0, metavar="P",
                        help="probability that a generation request gets a fault (default 0)")
    faults.add_argument("--faults", type=words(is_fault, FAULT_WORDS),
                        default="500,502,503,504,429,timeout,garbage", metavar="LIST",
                        help=f"kinds for --fault-rate, from {','.join(FAULTS)}")
    faults.add_argument("--seed", type=whole(None), default=0, metavar="N",
                        help="the same seed draws the same faults (default 0)")
    faults.add_argument("--fault-script", type=words(is_fault, FAULT_WORDS), default="",
                        metavar="LIST",
                        help="faults for the first requests in order, e.g. 503,503,200,timeout")
    faults.add_argument("--retry-after", type=number(0), default=1.0, metavar="S",
                        help="Retry-After seconds of a 429 fault (default 1; 86400: stubborn)")
    faults.add_argument("--status-faults", type=words(is_status_answer, STATUS_ANSWERS),
                        default="", metavar="LIST",
                        help="answers to the next v2 status polls in order: HTTP statuses, "
                             "state words (CANCELLED), timeout, redirect, garbage, truncate, "
                             "200")
    faults.add_argument("--status-fault", type=words(is_status_answer, STATUS_ANSWERS, one=True),
                        metavar="ANSWER",
                        help="the answer to every status poll and result fetch once "
                             "--status-faults is used up, e.g. 503 or WEIRD")
    faults.add_argument("--file-faults", type=words(is_file_answer, FILE_ANSWERS), default="",
                        metavar="LIST",
                        help="answers to the next /files/ downloads in order, e.g. "
                             "503,truncate")
    faults.add_argument("--file-fault", type=words(is_file_answer, FILE_ANSWERS, one=True),
                        metavar="ANSWER",
                        help="the answer to every /files/ download once --file-faults is "
                             "used up")
    faults.add_argument("--reject-marker", default="[reject]", metavar="TEXT",
                        help="prompts containing it get 400 (default [reject]; '' for none)")
    faults.add_argument("--reject-message", default="Prompt rejected by content filter",
                        metavar="TEXT", help="the error text of that 400")
    faults.add_argument("--fail-marker", default="[fail]", metavar="TEXT",
                        help="v2 prompts containing it end FAILED (default [fail])")
