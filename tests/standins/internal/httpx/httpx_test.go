package httpx

import (
	"bytes"
	"context"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

func captureLog(t *testing.T) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	w, f, p := log.Writer(), log.Flags(), log.Prefix()
	log.SetOutput(&buf)
	t.Cleanup(func() { log.SetOutput(w); log.SetFlags(f); log.SetPrefix(p) })
	return &buf
}

func TestLogRequests(t *testing.T) {
	buf := captureLog(t)
	h := LogRequests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/teapot" {
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	for _, p := range []string{"/teapot", "/plain", "/a%0Aforged"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p, nil))
	}
	out := buf.String()
	for _, want := range []string{"GET /teapot 418 ", "GET /plain 200 ", "GET /a?forged 200 "} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n"); n != 3 {
		t.Errorf("want 3 log lines, got %d:\n%s", n, out)
	}
}

func TestDecodeJSON(t *testing.T) {
	for body, ok := range map[string]bool{
		`{"a": "b"}`:          true,
		`{"a": "b"}  ` + "\n": true,
		`{bad`:                false,
		``:                    false,
		`{"a": "b"} {}`:       false,
	} {
		var v map[string]any
		err := DecodeJSON(httptest.NewRecorder(), httptest.NewRequest("POST", "/", strings.NewReader(body)), &v)
		if (err == nil) != ok {
			t.Errorf("DecodeJSON(%q) error = %v, want ok=%t", body, err, ok)
		}
	}
}

func TestEnv(t *testing.T) {
	t.Setenv("X_STANDIN", "")
	if Env("X_STANDIN", "def") != "def" {
		t.Error("empty variable should give the default")
	}
	t.Setenv("X_STANDIN", "7")
	if n, err := EnvInt("X_STANDIN", 1); n != 7 || err != nil {
		t.Errorf("EnvInt = %d, %v", n, err)
	}
	t.Setenv("X_STANDIN", "-1")
	if _, err := EnvInt("X_STANDIN", 1); err == nil {
		t.Error("EnvInt accepted -1")
	}
	t.Setenv("X_STANDIN", "1m30s")
	if d, err := EnvDuration("X_STANDIN", 0); d != 90*time.Second || err != nil {
		t.Errorf("EnvDuration = %v, %v", d, err)
	}
	t.Setenv("X_STANDIN", "soon")
	if _, err := EnvDuration("X_STANDIN", 0); err == nil {
		t.Error("EnvDuration accepted soon")
	}
}

// TestRunStopsOnSIGTERM sends SIGTERM to the test process itself: the server
// must catch it (as PID 1 in a container it has to) and return promptly.
func TestRunStopsOnSIGTERM(t *testing.T) {
	captureLog(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- runOn(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	}()
	url := "http://" + ln.Addr().String() + "/"
	deadline := time.Now().Add(5 * time.Second)
	for { // once a request is served, the signal handler is installed
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server never answered: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("shutdown took %v", el)
		}
	case <-time.After(ShutdownGrace + 2*time.Second):
		t.Fatal("server did not stop on SIGTERM")
	}
}

// TestServeCancelsSlowRequests: a request still running after ShutdownGrace
// sees its context cancelled, so the server does not hang.
func TestServeCancelsSlowRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("waits ShutdownGrace")
	}
	captureLog(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	started, cancelled := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-r.Context().Done()
			close(cancelled)
		}))
	}()
	go http.Get("http://" + ln.Addr().String() + "/")
	<-started
	stop()
	select {
	case <-cancelled:
	case <-time.After(ShutdownGrace + 2*time.Second):
		t.Fatal("slow request was never cancelled")
	}
	if err := <-done; err != nil {
		t.Errorf("Serve returned %v", err)
	}
}
