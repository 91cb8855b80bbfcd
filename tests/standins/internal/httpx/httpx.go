// Package httpx holds the small pieces the stand-in servers share: logging
// set-up, a request logger, JSON helpers, environment defaults and a server
// that stops on SIGTERM or SIGINT (the binaries run as PID 1 in scratch images,
// where nothing else would stop them).
package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
)

// ShutdownGrace is how long in-flight requests get after a signal before they
// are cancelled and the server is closed.
const ShutdownGrace = 5 * time.Second

// MaxBody caps request bodies read by DecodeJSON.
const MaxBody = 1 << 20

// SetupLog sends the standard logger to stdout with the service name as prefix.
func SetupLog(name string) {
	log.SetOutput(os.Stdout)
	log.SetFlags(log.LstdFlags | log.LUTC | log.Lmsgprefix)
	log.SetPrefix(name + ": ")
}

// Env returns the environment variable key, or def when it is unset or empty.
func Env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// EnvInt is Env for a non-negative integer.
func EnvInt(key string, def int) (int, error) {
	v := os.Getenv(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s=%q: want a non-negative integer", key, v)
	}
	return n, nil
}

// EnvDuration is Env for a non-negative Go duration such as "30s".
func EnvDuration(key string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(key)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want a non-negative Go duration such as 30s", key, v)
	}
	return d, nil
}

// WriteJSON writes v as a JSON reply with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		log.Printf("writing reply: %v", err)
	}
}

// DecodeJSON reads one JSON value (at most MaxBody bytes) from the request
// body into v. Trailing data after the value is an error.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBody))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid JSON body: %w", err)
	}
	if err := dec.Decode(&json.RawMessage{}); err != io.EOF {
		return errors.New("invalid JSON body: data after the JSON value")
	}
	return nil
}

// Printable replaces control characters so user input cannot forge log lines.
func Printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

// LogRequests logs one line per request: method, path, status and duration.
func LogRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		log.Printf("%s %s %d %s", r.Method, Printable(r.URL.Path), rec.status(),
			time.Since(start).Round(time.Microsecond))
	})
}

type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

// Run listens on addr and serves h until SIGTERM or SIGINT, then shuts down.
func Run(addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return runOn(ln, h)
}

func runOn(ln net.Listener, h http.Handler) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return Serve(ctx, ln, h)
}

// Serve serves h on ln until ctx is done. In-flight requests then get
// ShutdownGrace to finish; after that their contexts are cancelled (so long
// work such as a slow model pull stops) and the server is closed.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Printf("listening on %s", ln.Addr())

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Printf("stop signal received, shutting down")
	sctx, scancel := context.WithTimeout(context.Background(), ShutdownGrace)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Printf("shutdown: %v; cancelling in-flight requests", err)
		cancel()
		srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Printf("stopped")
	return nil
}
