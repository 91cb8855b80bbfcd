package httpx

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ProbeTimeout bounds one probe request: a connection a NetworkPolicy drops never answers.
const ProbeTimeout = 3 * time.Second

// Probe is the stand-ins' `probe URL [JSON-BODY]` subcommand: one HTTP request (GET, or POST of
// the body as JSON), the status and the body written to out. The tests run it inside the stand-in
// pods (kubectl exec) to make real connections from the real pods, which NetworkPolicy tells
// apart by their labels. Exit status: 0 when the server answered (any status), 2 when no answer
// came (refused, dropped, timed out), 64 on bad usage.
func Probe(args []string, out io.Writer) int {
	if len(args) < 1 || len(args) > 2 {
		fmt.Fprintln(out, "usage: probe URL [JSON-BODY]")
		return 64
	}
	client := &http.Client{Timeout: ProbeTimeout}
	var resp *http.Response
	var err error
	if len(args) == 2 {
		resp, err = client.Post(args[0], "application/json", strings.NewReader(args[1]))
	} else {
		resp, err = client.Get(args[0])
	}
	if err != nil {
		fmt.Fprintf(out, "no answer: %v\n", err)
		return 2
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprintf(out, "status=%d body=%s\n", resp.StatusCode, strings.TrimSpace(string(body)))
	return 0
}
