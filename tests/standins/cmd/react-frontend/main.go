// Command react-frontend is a TEST STAND-IN for the React chatbot frontend
// image (react-frontend:1.0.0). See ../../README.md.
package main

import (
	"log"
	"os"

	"ai-stack.local/standins/internal/frontend"
	"ai-stack.local/standins/internal/httpx"
)

func main() {
	httpx.SubcommandIfAsked(os.Args, os.Stdout, os.Exit)
	httpx.SetupLog("react-frontend")
	port := httpx.Env("PORT", "3000")
	log.Printf("TEST STAND-IN for react-frontend:1.0.0, port %s", port)
	if err := httpx.Run(":"+port, frontend.Handler()); err != nil {
		log.Fatal(err)
	}
}
