package modelrunner

import (
	"bytes"
	"encoding/json"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ai-stack.local/standins/internal/testhttp"
)

const model = "ai/smollm2:360M-Q4_K_M"

func captureLog(t *testing.T) *syncBuffer {
	t.Helper()
	buf := &syncBuffer{}
	w := log.Writer()
	log.SetOutput(buf)
	t.Cleanup(func() { log.SetOutput(w) })
	return buf
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newServer(t *testing.T, root string, delay time.Duration) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(Handler(NewStore(root, delay)))
	t.Cleanup(srv.Close)
	return srv
}

// do sends a request and returns the status and body.
func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	resp, b := testhttp.Do(t, method, url, body)
	return resp.StatusCode, b
}

func TestRootAndNoHealth(t *testing.T) {
	srv := newServer(t, t.TempDir(), 0)
	if code, body := do(t, "GET", srv.URL+"/", ""); code != 200 || !strings.Contains(body, "Docker Model Runner is running") {
		t.Errorf("GET /: %d %q", code, body)
	}
	if code, _ := do(t, "GET", srv.URL+"/health", ""); code != 404 {
		t.Errorf("GET /health: %d, want 404", code)
	}
}

func TestCreateAndLookup(t *testing.T) {
	logs := captureLog(t)
	srv := newServer(t, t.TempDir(), 0)
	lookup := srv.URL + "/models/" + model

	if code, body := do(t, "GET", lookup, ""); code != 404 || !strings.Contains(body, `"model not found"`) {
		t.Fatalf("lookup before pull: %d %s", code, body)
	}
	if code, body := do(t, "GET", srv.URL+"/models", ""); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("list before pull: %d %s", code, body)
	}
	for _, bad := range []string{`{bad`, `{}`, `{"from": ""}`, `{"from": 3}`, `{"from": "a b"}`, ``} {
		if code, _ := do(t, "POST", srv.URL+"/models/create", bad); code != 400 {
			t.Errorf("create %q: %d, want 400", bad, code)
		}
	}
	if code, body := do(t, "POST", srv.URL+"/models/create", `{"from": "`+model+`"}`); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	if !strings.Contains(logs.String(), "pulled model "+model+" in ") {
		t.Errorf("no pull log line:\n%s", logs)
	}
	if code, body := do(t, "POST", srv.URL+"/models/create", `{"from": "`+model+`"}`); code != 200 {
		t.Fatalf("second create: %d %s", code, body)
	}
	if !strings.Contains(logs.String(), "model "+model+" already present, not pulling") {
		t.Errorf("no already-present log line:\n%s", logs)
	}

	code, body := do(t, "GET", lookup, "")
	var got modelInfo
	if code != 200 || json.Unmarshal([]byte(body), &got) != nil || got.ID != model || len(got.Tags) != 1 || got.Tags[0] != model {
		t.Fatalf("lookup after pull: %d %s", code, body)
	}
	code, body = do(t, "GET", srv.URL+"/models", "")
	var list []modelInfo
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list) != 1 || list[0].ID != model {
		t.Fatalf("list after pull: %d %s", code, body)
	}
	if code, _ := do(t, "GET", srv.URL+"/models/create", ""); code != 404 {
		t.Errorf("GET /models/create: %d, want 404 (a lookup)", code)
	}
	if code, _ := do(t, "GET", srv.URL+"/models/ai/smollm2", ""); code != 404 {
		t.Errorf("GET other tag: %d, want 404", code)
	}
}

func TestModelsSurviveRestart(t *testing.T) {
	root := t.TempDir()
	if _, err := NewStore(root, 0).Pull(t.Context(), model); err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, root, time.Hour) // a new process on the same volume
	if code, body := do(t, "GET", srv.URL+"/models/"+model, ""); code != 200 {
		t.Fatalf("lookup after restart: %d %s", code, body)
	}
	start := time.Now()
	if code, body := do(t, "POST", srv.URL+"/models/create", `{"from": "`+model+`"}`); code != 200 || time.Since(start) > time.Second {
		t.Fatalf("create of a present model: %d %s after %v", code, body, time.Since(start))
	}
	models, err := NewStore(root, 0).List()
	if err != nil || len(models) != 1 || models[0].Name != model {
		t.Fatalf("List = %v, %v", models, err)
	}
}

func TestPullDelayAndConcurrentCreates(t *testing.T) {
	root := t.TempDir()
	const delay = 200 * time.Millisecond
	srv := newServer(t, root, delay)
	var wg sync.WaitGroup
	var mu sync.Mutex
	pulled := 0
	start := time.Now()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := do(t, "POST", srv.URL+"/models/create", `{"from": "`+model+`"}`)
			var out struct{ Pulled bool }
			if code != 200 || json.Unmarshal([]byte(body), &out) != nil {
				t.Errorf("create: %d %s", code, body)
			}
			mu.Lock()
			if out.Pulled {
				pulled++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if el := time.Since(start); el < delay || el > 5*delay {
		t.Errorf("8 concurrent creates took %v, want about one delay (%v)", el, delay)
	}
	if pulled != 1 {
		t.Errorf("%d creates pulled, want exactly 1", pulled)
	}
	entries, _ := filepath.Glob(filepath.Join(root, "models", "*", "*"))
	if len(entries) != 1 || filepath.Base(entries[0]) != "model.json" {
		t.Errorf("files on disk: %v", entries)
	}
	data, err := os.ReadFile(entries[0])
	var rec record
	if err != nil || json.Unmarshal(data, &rec) != nil || rec.ID != model {
		t.Errorf("model.json = %q, %v", data, err)
	}
}

func TestUnwritableModelsPath(t *testing.T) {
	logs := captureLog(t)
	// A regular file where the directory should be: not writable even as root.
	root := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(root, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, root, 0)
	code, body := do(t, "POST", srv.URL+"/models/create", `{"from": "`+model+`"}`)
	if code != 500 || !strings.Contains(body, "not a directory") {
		t.Errorf("create on unwritable path: %d %s", code, body)
	}
	if !strings.Contains(logs.String(), "not a directory") {
		t.Errorf("error not logged:\n%s", logs)
	}
}

func TestOpenAI(t *testing.T) {
	root := t.TempDir()
	srv := newServer(t, root, 0)
	for _, p := range OpenAIPrefixes[:2] {
		code, body := do(t, "GET", srv.URL+p+"/models", "")
		if code != 200 || !strings.Contains(body, `"data":[]`) || !strings.Contains(body, `"object":"list"`) {
			t.Errorf("%s/models empty: %d %s", p, code, body)
		}
		chat := `{"model": "` + model + `", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "how are you?"}]}`
		if code, _ := do(t, "POST", srv.URL+p+"/chat/completions", chat); code != 404 {
			t.Errorf("%s chat before pull: %d, want 404", p, code)
		}
		if code, _ := do(t, "POST", srv.URL+p+"/chat/completions", `{bad`); code != 400 {
			t.Errorf("%s chat with bad JSON: %d, want 400", p, code)
		}
	}
	if _, err := NewStore(root, 0).Pull(t.Context(), model); err != nil {
		t.Fatal(err)
	}
	for _, p := range OpenAIPrefixes[:2] {
		code, body := do(t, "GET", srv.URL+p+"/models", "")
		var list struct {
			Object string
			Data   []struct{ ID, Object string }
		}
		if code != 200 || json.Unmarshal([]byte(body), &list) != nil || list.Object != "list" ||
			len(list.Data) != 1 || list.Data[0].ID != model || list.Data[0].Object != "model" {
			t.Errorf("%s/models: %d %s", p, code, body)
		}
		chat := `{"model": "` + model + `", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": [{"type": "text", "text": "how are you?"}]}]}`
		code, body = do(t, "POST", srv.URL+p+"/chat/completions", chat)
		var out struct {
			ID, Object, Model string
			Choices           []struct {
				Message      struct{ Role, Content string }
				FinishReason string `json:"finish_reason"`
			}
			Usage struct {
				TotalTokens int `json:"total_tokens"`
			}
		}
		if code != 200 || json.Unmarshal([]byte(body), &out) != nil {
			t.Fatalf("%s chat: %d %s", p, code, body)
		}
		if !strings.HasPrefix(out.ID, "chatcmpl-") || out.Object != "chat.completion" || out.Model != model ||
			len(out.Choices) != 1 || out.Choices[0].Message.Role != "assistant" ||
			out.Choices[0].Message.Content != "stand-in reply to: how are you?" ||
			out.Choices[0].FinishReason != "stop" || out.Usage.TotalTokens == 0 {
			t.Errorf("%s chat reply: %s", p, body)
		}
	}
}
