// Package testhttp holds the one request helper the stand-ins' tests share.
package testhttp

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Do sends one request and returns the response (body already read and closed) and its body.
func Do(t testing.TB, method, url, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}
