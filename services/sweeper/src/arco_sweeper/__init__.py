"""The arco sweeper: anti-entropy repairs of stuck tasks (arco-orchestration 4, design D7)."""
