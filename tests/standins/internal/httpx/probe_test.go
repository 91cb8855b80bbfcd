package httpx

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestProbeGetAndPost(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusTeapot)
		w.Write([]byte(r.Method + " " + r.Header.Get("Content-Type") + " " + string(b)))
	}))
	defer srv.Close()
	var out bytes.Buffer
	if rc := Probe([]string{srv.URL}, &out); rc != 0 || !strings.Contains(out.String(), "status=418 body=GET") {
		t.Fatalf("GET: rc=%d out=%q", rc, out.String())
	}
	out.Reset()
	if rc := Probe([]string{srv.URL, `{"a":1}`}, &out); rc != 0 || !strings.Contains(out.String(), `POST application/json {"a":1}`) {
		t.Fatalf("POST: rc=%d out=%q", rc, out.String())
	}
	out.Reset()
	if rc := Probe([]string{"-X", "DELETE", "-t", "10", srv.URL}, &out); rc != 0 || !strings.Contains(out.String(), "status=418 body=DELETE") {
		t.Fatalf("DELETE: rc=%d out=%q", rc, out.String())
	}
	out.Reset()
	if rc := Probe([]string{"-t", "0", srv.URL}, &out); rc != 64 {
		t.Fatalf("-t 0: rc=%d out=%q", rc, out.String())
	}
}

func TestProbeNoAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: refused
	var out bytes.Buffer
	if rc := Probe([]string{"http://" + addr + "/"}, &out); rc != 2 || !strings.Contains(out.String(), "no answer") {
		t.Fatalf("rc=%d out=%q", rc, out.String())
	}
	if rc := Probe(nil, &out); rc != 64 {
		t.Fatalf("usage: rc=%d", rc)
	}
}

func TestSubcommandIfAsked(t *testing.T) {
	called := -1
	SubcommandIfAsked([]string{"app"}, io.Discard, func(c int) { called = c })
	SubcommandIfAsked([]string{"app", "serve"}, io.Discard, func(c int) { called = c })
	if called != -1 {
		t.Fatal("ran without a subcommand")
	}
	for _, sub := range []string{"probe"} {
		called = -1
		SubcommandIfAsked([]string{"app", sub}, io.Discard, func(c int) { called = c })
		if called != 64 {
			t.Fatalf("%s: exit %d", sub, called)
		}
	}
}
