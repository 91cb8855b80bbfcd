module ai-stack.local/standins

go 1.24
