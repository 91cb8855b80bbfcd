// Package modelrunner is the TEST STAND-IN for Docker Model Runner
// (docker/model-runner:v1.1.27). It honours the routes the stack uses: GET /,
// POST /models/create, GET /models, GET /models/{name}, and the OpenAI-compatible
// GET .../models and POST .../chat/completions. "Pulling" a model writes a small
// file under MODELS_PATH; chat replies are canned.
package modelrunner

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"strings"
	"time"
	"unicode"

	"ai-stack.local/standins/internal/httpx"
)

// OpenAIPrefixes are the path prefixes of the OpenAI-compatible API. The real
// runner serves /engines/v1 and /engines/llama.cpp/v1; newer ones also /v1.
var OpenAIPrefixes = []string{"/engines/v1", "/engines/llama.cpp/v1", "/v1"}

// ReplyPrefix starts every chat reply; the last user message follows it.
const ReplyPrefix = "stand-in reply to: "

type server struct{ store *Store }

// Handler returns the runner's routes, with request logging.
func Handler(store *Store) http.Handler {
	s := &server{store: store}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.root)
	mux.HandleFunc("POST /models/create", s.create)
	mux.HandleFunc("GET /models", s.list)
	mux.HandleFunc("GET /models/{name...}", s.get) // name may hold / and :
	for _, p := range OpenAIPrefixes {
		mux.HandleFunc("GET "+p+"/models", s.openAIModels)
		mux.HandleFunc("POST "+p+"/chat/completions", s.chatCompletions)
	}
	return httpx.LogRequests(mux)
}

func (s *server) root(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "Docker Model Runner is running")
}

type modelInfo struct {
	ID      string   `json:"id"`
	Tags    []string `json:"tags"`
	Created int64    `json:"created"`
}

func info(m Model) modelInfo {
	return modelInfo{ID: m.Name, Tags: []string{m.Name}, Created: m.Created.Unix()}
}

func message(w http.ResponseWriter, status int, msg string) {
	httpx.WriteJSON(w, status, map[string]string{"message": msg})
}

// validName rejects empty names and names with spaces or control characters.
func validName(name string) bool {
	return name != "" && !strings.ContainsFunc(name, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r)
	})
}

func (s *server) create(w http.ResponseWriter, r *http.Request) {
	var req struct {
		From string `json:"from"`
	}
	if err := httpx.DecodeJSON(w, r, &req); err != nil {
		message(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.From == "" {
		message(w, http.StatusBadRequest, `"from" is required, e.g. {"from": "ai/smollm2"}`)
		return
	}
	if !validName(req.From) {
		message(w, http.StatusBadRequest, fmt.Sprintf("invalid model name %q", req.From))
		return
	}
	start := time.Now()
	pulled, err := s.store.Pull(r.Context(), req.From)
	if err != nil {
		log.Printf("pulling model %s failed: %v", req.From, err)
		message(w, http.StatusInternalServerError, fmt.Sprintf("pulling model %s: %v", req.From, err))
		return
	}
	if !pulled {
		log.Printf("model %s already present, not pulling", req.From)
		httpx.WriteJSON(w, http.StatusOK, map[string]any{"message": "model " + req.From + " already present", "pulled": false})
		return
	}
	log.Printf("pulled model %s in %s", req.From, time.Since(start).Round(time.Millisecond))
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"message": "pulled model " + req.From, "pulled": true})
}

func (s *server) list(w http.ResponseWriter, _ *http.Request) {
	models, err := s.store.List()
	if err != nil {
		log.Printf("listing models: %v", err)
		message(w, http.StatusInternalServerError, err.Error())
		return
	}
	out := []modelInfo{}
	for _, m := range models {
		out = append(out, info(m))
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

func (s *server) get(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if name == "" { // GET /models/
		s.list(w, r)
		return
	}
	m, ok := s.store.Get(name)
	if !ok {
		message(w, http.StatusNotFound, "model not found")
		return
	}
	httpx.WriteJSON(w, http.StatusOK, info(m))
}

func openAIError(w http.ResponseWriter, status int, typ, msg string) {
	httpx.WriteJSON(w, status, map[string]any{
		"error": map[string]string{"message": msg, "type": typ},
	})
}

func (s *server) openAIModels(w http.ResponseWriter, _ *http.Request) {
	models, err := s.store.List()
	if err != nil {
		log.Printf("listing models: %v", err)
		openAIError(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	data := []map[string]any{}
	for _, m := range models {
		data = append(data, map[string]any{"id": m.Name, "object": "model", "created": m.Created.Unix(), "owned_by": "docker"})
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// text returns the message content, whether a string or an array of parts.
func (m chatMessage) text() string {
	var s string
	if json.Unmarshal(m.Content, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(m.Content, &parts) != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "text" {
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

func (s *server) chatCompletions(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model    string        `json:"model"`
		Messages []chatMessage `json:"messages"`
	}
	if err := httpx.DecodeJSON(w, r, &req); err != nil {
		openAIError(w, http.StatusBadRequest, "invalid_request_error", err.Error())
		return
	}
	if req.Model == "" {
		openAIError(w, http.StatusBadRequest, "invalid_request_error", `"model" is required`)
		return
	}
	if _, ok := s.store.Get(req.Model); !ok {
		openAIError(w, http.StatusNotFound, "not_found_error", "model not found: "+req.Model)
		return
	}
	var last string
	words := 0
	for _, m := range req.Messages {
		t := m.text()
		words += len(strings.Fields(t))
		if m.Role == "user" {
			last = t
		}
	}
	reply := ReplyPrefix + last
	completion := len(strings.Fields(reply))
	httpx.WriteJSON(w, http.StatusOK, map[string]any{
		"id":      "chatcmpl-" + randomID(),
		"object":  "chat.completion",
		"created": time.Now().Unix(),
		"model":   req.Model,
		"choices": []map[string]any{{
			"index":         0,
			"message":       map[string]string{"role": "assistant", "content": reply},
			"finish_reason": "stop",
		}},
		"usage": map[string]int{
			"prompt_tokens":     words,
			"completion_tokens": completion,
			"total_tokens":      words + completion,
		},
	})
}

func randomID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}
