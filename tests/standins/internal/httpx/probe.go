package httpx

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ProbeTimeout bounds one probe request by default: a connection a NetworkPolicy drops never
// answers.
const ProbeTimeout = 3 * time.Second

// Probe is the stand-ins' `probe [-X METHOD] [-t SECONDS] URL [JSON-BODY]` subcommand: one HTTP
// request (GET, or POST of the body as JSON, or METHOD), the status and the body written to out.
// The tests run it inside the stand-in pods (kubectl exec) to make real connections from the real
// pods, which NetworkPolicy tells apart by their labels; -t gives a slow answer (a model's first
// chat completion) more than the default 3 s. Exit status: 0 when the server answered (any
// status), 2 when no answer came (refused, dropped, timed out), 64 on bad usage.
func Probe(args []string, out io.Writer) int {
	method, timeout := "", ProbeTimeout
	for len(args) >= 2 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-X":
			method = args[1]
		case "-t":
			seconds, err := strconv.Atoi(args[1])
			if err != nil || seconds <= 0 {
				fmt.Fprintln(out, "probe: -t wants a positive number of seconds")
				return 64
			}
			timeout = time.Duration(seconds) * time.Second
		default:
			args = nil
		}
		if args != nil {
			args = args[2:]
		}
	}
	if len(args) < 1 || len(args) > 2 {
		fmt.Fprintln(out, "usage: probe [-X METHOD] [-t SECONDS] URL [JSON-BODY]")
		return 64
	}
	var body io.Reader
	if len(args) == 2 {
		body = strings.NewReader(args[1])
		if method == "" {
			method = http.MethodPost
		}
	}
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequest(method, args[0], body)
	if err != nil {
		fmt.Fprintf(out, "probe: %v\n", err)
		return 64
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: timeout}).Do(req)
	if err != nil {
		fmt.Fprintf(out, "no answer: %v\n", err)
		return 2
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprintf(out, "status=%d body=%s\n", resp.StatusCode, strings.TrimSpace(string(data)))
	return 0
}

// SubcommandIfAsked runs the tests' subcommand (probe) and exits when the binary was started as
// `<binary> probe ...`; otherwise it returns and the server starts.
func SubcommandIfAsked(args []string, out io.Writer, exit func(int)) {
	if len(args) >= 2 && args[1] == "probe" {
		exit(Probe(args[2:], out))
	}
}
