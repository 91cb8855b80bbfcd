package backend

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"ai-stack.local/standins/internal/testhttp"
)

const model = "ai/smollm2:360M-Q4_K_M"

func TestHealthAndCORS(t *testing.T) {
	const burn = 30 * time.Millisecond
	srv := httptest.NewServer(Handler(Config{LLMURL: "http://127.0.0.1:1", Model: model, CPU: burn}))
	defer srv.Close()

	start := time.Now()
	resp, body := testhttp.Do(t, "GET", srv.URL+"/health", "")
	if resp.StatusCode != 200 || strings.TrimSpace(body) != `{"status":"ok"}` {
		t.Errorf("GET /health: %d %s", resp.StatusCode, body)
	}
	if el := time.Since(start); el < burn {
		t.Errorf("GET /health took %v, want at least the %v CPU burn", el, burn)
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("Access-Control-Allow-Origin = %q", got)
	}
	resp, _ = testhttp.Do(t, "OPTIONS", srv.URL+"/chat", "")
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Errorf("OPTIONS /chat: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, _ := testhttp.Do(t, "GET", srv.URL+"/chat", ""); resp.StatusCode != 405 {
		t.Errorf("GET /chat: %d, want 405", resp.StatusCode)
	}
}

func TestChatAgainstFakeLLM(t *testing.T) {
	var got struct {
		Model    string
		Messages []struct{ Role, Content string }
	}
	llm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/engines/v1/chat/completions" {
			http.Error(w, "wrong route "+r.Method+" "+r.URL.Path, 404)
			return
		}
		json.NewDecoder(r.Body).Decode(&got)
		w.Write([]byte(`{"model": "served-model", "choices": [{"message": {"role": "assistant", "content": "pong"}}]}`))
	}))
	defer llm.Close()
	srv := httptest.NewServer(Handler(Config{LLMURL: llm.URL + "/engines/v1/", Model: model}))
	defer srv.Close()

	resp, body := testhttp.Do(t, "POST", srv.URL+"/chat", `{"message": "ping"}`)
	if resp.StatusCode != 200 || strings.TrimSpace(body) != `{"reply":"pong","model":"served-model"}` {
		t.Errorf("POST /chat: %d %s", resp.StatusCode, body)
	}
	if got.Model != model || len(got.Messages) != 1 || got.Messages[0].Role != "user" || got.Messages[0].Content != "ping" {
		t.Errorf("LLM got %+v", got)
	}
	for _, bad := range []string{`{bad`, `{}`, `{"message": ""}`, `{"message": "  "}`, `{"message": 1}`, ``} {
		if resp, _ := testhttp.Do(t, "POST", srv.URL+"/chat", bad); resp.StatusCode != 400 {
			t.Errorf("POST /chat %q: %d, want 400", bad, resp.StatusCode)
		}
	}
}

func TestChatUpstreamErrors(t *testing.T) {
	for name, llm := range map[string]http.HandlerFunc{
		"status":     func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) },
		"not json":   func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>")) },
		"no choices": func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"choices": []}`)) },
	} {
		up := httptest.NewServer(llm)
		srv := httptest.NewServer(Handler(Config{LLMURL: up.URL, Model: model}))
		resp, body := testhttp.Do(t, "POST", srv.URL+"/chat", `{"message": "ping"}`)
		var out struct{ Error string }
		if resp.StatusCode != 502 || json.Unmarshal([]byte(body), &out) != nil || out.Error == "" {
			t.Errorf("%s: %d %s", name, resp.StatusCode, body)
		}
		srv.Close()
		up.Close()
	}
	// Nothing listening.
	srv := httptest.NewServer(Handler(Config{LLMURL: "http://127.0.0.1:1/engines/v1", Model: model}))
	defer srv.Close()
	if resp, body := testhttp.Do(t, "POST", srv.URL+"/chat", `{"message": "ping"}`); resp.StatusCode != 502 {
		t.Errorf("unreachable LLM: %d %s", resp.StatusCode, body)
	}
}
