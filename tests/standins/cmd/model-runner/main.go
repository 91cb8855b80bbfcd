// Command model-runner is a TEST STAND-IN for Docker Model Runner
// (docker/model-runner:v1.1.27). See ../../README.md.
package main

import (
	"log"
	"os"

	"ai-stack.local/standins/internal/httpx"
	"ai-stack.local/standins/internal/modelrunner"
)

func main() {
	httpx.SubcommandIfAsked(os.Args, os.Stdout, os.Exit)
	httpx.SetupLog("model-runner")
	delay, err := httpx.EnvDuration("STANDIN_PULL_DELAY", 0)
	if err != nil {
		log.Fatal(err)
	}
	port := httpx.Env("MODEL_RUNNER_PORT", "12434")
	path := httpx.Env("MODELS_PATH", "/models")
	store := modelrunner.NewStore(path, delay)
	log.Printf("TEST STAND-IN for docker/model-runner:v1.1.27, port %s, MODELS_PATH=%s, STANDIN_PULL_DELAY=%s", port, path, delay)
	models, err := store.List()
	if err != nil {
		log.Printf("listing models: %v", err)
	}
	log.Printf("models on disk: %d", len(models))
	for _, m := range models {
		log.Printf("model on disk: %s", m.Name)
	}
	if err := httpx.Run(":"+port, modelrunner.Handler(store)); err != nil {
		log.Fatal(err)
	}
}
