// Command go-backend is a TEST STAND-IN for the chatbot's Go backend image
// (go-backend:1.0.0; port 8080, routes /chat and /health). See ../../README.md.
package main

import (
	"log"
	"os"
	"time"

	"ai-stack.local/standins/internal/backend"
	"ai-stack.local/standins/internal/httpx"
)

func main() {
	httpx.SubcommandIfAsked(os.Args, os.Stdout, os.Exit)
	httpx.SetupLog("go-backend")
	cpuMS, err := httpx.EnvInt("STANDIN_CPU_MS", 20)
	if err != nil {
		log.Fatal(err)
	}
	cfg := backend.Config{
		LLMURL: httpx.Env("LLM_URL", "http://docker-model-runner:12434/engines/v1"),
		Model:  httpx.Env("LLM_MODEL", "ai/smollm2"),
		CPU:    time.Duration(cpuMS) * time.Millisecond,
	}
	port := httpx.Env("PORT", "8080")
	// Never log the key itself.
	log.Printf("TEST STAND-IN for go-backend:1.0.0, port %s, LLM_URL=%s, LLM_MODEL=%s, STANDIN_CPU_MS=%d, ANTHROPIC_API_KEY set: %t",
		port, cfg.LLMURL, cfg.Model, cpuMS, os.Getenv("ANTHROPIC_API_KEY") != "")
	if err := httpx.Run(":"+port, backend.Handler(cfg)); err != nil {
		log.Fatal(err)
	}
}
