// Package backend is the TEST STAND-IN for the chatbot's Go backend
// (go-backend:1.0.0): GET /health and POST /chat, which forwards the message to
// an OpenAI-compatible chat completions endpoint.
package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"time"

	"ai-stack.local/standins/internal/cpuburn"
	"ai-stack.local/standins/internal/httpx"
)

// Config is what the backend reads from its environment.
type Config struct {
	LLMURL string        // OpenAI-compatible base URL, e.g. http://docker-model-runner:12434/engines/v1
	Model  string        // model sent in each completion request
	CPU    time.Duration // CPU time burnt per /health and /chat request
	Client *http.Client  // nil: a client with a 60s timeout
}

type server struct {
	cfg    Config
	url    string
	client *http.Client
}

// Handler returns the backend's routes, with CORS and request logging.
func Handler(cfg Config) http.Handler {
	s := &server{cfg: cfg, url: strings.TrimRight(cfg.LLMURL, "/") + "/chat/completions", client: cfg.Client}
	if s.client == nil {
		s.client = &http.Client{Timeout: 60 * time.Second}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", s.burning(s.health))
	mux.HandleFunc("POST /chat", s.burning(s.chat))
	return httpx.LogRequests(cors(mux))
}

// cors answers preflight requests and allows any origin, like the real backend.
func cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
		if r.Method == http.MethodOptions {
			h.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// burning does the configured amount of CPU work before handling the request.
func (s *server) burning(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cpuburn.Burn(r.Context(), s.cfg.CPU)
		h(w, r)
	}
}

func (s *server) health(w http.ResponseWriter, _ *http.Request) {
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

type chatRequest struct {
	Message string `json:"message"`
}

type chatReply struct {
	Reply string `json:"reply"`
	Model string `json:"model"`
}

func (s *server) chat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if err := httpx.DecodeJSON(w, r, &req); err != nil {
		httpx.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	if strings.TrimSpace(req.Message) == "" {
		httpx.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "message is required"})
		return
	}
	reply, model, err := s.complete(r.Context(), req.Message)
	if err != nil {
		log.Printf("chat: %v", err)
		httpx.WriteJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	httpx.WriteJSON(w, http.StatusOK, chatReply{Reply: reply, Model: model})
}

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// complete asks the LLM for a reply to one user message.
func (s *server) complete(ctx context.Context, text string) (reply, model string, err error) {
	body, err := json.Marshal(map[string]any{
		"model":    s.cfg.Model,
		"messages": []message{{Role: "user", Content: text}},
	})
	if err != nil {
		return "", "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return "", "", fmt.Errorf("LLM request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("calling LLM: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return "", "", fmt.Errorf("reading LLM reply: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return "", "", fmt.Errorf("LLM answered %s: %s", resp.Status, snippet(data))
	}
	var out struct {
		Model   string `json:"model"`
		Choices []struct {
			Message message `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return "", "", fmt.Errorf("decoding LLM reply: %w", err)
	}
	if len(out.Choices) == 0 {
		return "", "", fmt.Errorf("LLM reply has no choices: %s", snippet(data))
	}
	if out.Model == "" {
		out.Model = s.cfg.Model
	}
	return out.Choices[0].Message.Content, out.Model, nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
