"""Azure target: Container Registry, Container Apps or Azure ML online endpoint, Azure Monitor."""
