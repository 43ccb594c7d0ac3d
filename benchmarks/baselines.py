"""Hand-written baselines, copied from the project's reference benchmark (numpy in the style of the seed article,
and PyTorch), so that specgrad is measured against them in the same process. Kept as written there:
these loops are the yardstick, not code to improve."""

import numpy as np


def poly_data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    y = np.sin(3 * x) + 0.05 * rng.standard_normal(n)
    return x, y


def digits_data():
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(X))
    X, y = X[idx], y[idx]
    return X[:1500], y[:1500], X[1500:], y[1500:]


def poly_numpy(x, y, steps, lr):
    k = np.zeros(6)
    powers = np.vstack([x**j for j in range(6)])
    for _ in range(steps):
        yh = (k[:, None] * powers).sum(axis=0)
        r = y - yh
        g = np.array([-2 * (r * (x**j)).sum() for j in range(6)])
        k -= lr * g
    return float(((y - (k[:, None] * powers).sum(0)) ** 2).sum())


def poly_torch(x, y, steps, lr):
    import torch

    xt = torch.tensor(x)
    yt = torch.tensor(y)
    k = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([k], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        yh = sum(k[j] * xt**j for j in range(6))
        loss = ((yt - yh) ** 2).sum()
        loss.backward()
        opt.step()
    return float(loss)


def mlp_numpy(X, y, Xt, yt, sizes, epochs, bs, lr, seed=0):
    rng = np.random.default_rng(seed)
    Ws = [rng.standard_normal((a, b)).astype(np.float32) * np.sqrt(2.0 / a) for a, b in zip(sizes[:-1], sizes[1:])]
    bs_ = [np.zeros(b, np.float32) for b in sizes[1:]]
    params = Ws + bs_
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    b1, b2, eps, t = 0.9, 0.999, 1e-8, 0
    n = len(X)
    steps = 0
    for _ in range(epochs):
        idx = rng.permutation(n)
        for s in range(0, n, bs):
            bi = idx[s : s + bs]
            xb = X[bi]
            yb = y[bi]
            acts = [xb]
            h = xb
            for i in range(len(Ws)):
                z = h @ Ws[i] + bs_[i]
                h = np.maximum(z, 0) if i < len(Ws) - 1 else z
                acts.append(h)
            z = h - h.max(1, keepdims=True)
            e = np.exp(z)
            p = e / e.sum(1, keepdims=True)
            d = p
            d[np.arange(len(yb)), yb] -= 1
            d /= len(yb)
            gW = [None] * len(Ws)
            gb = [None] * len(Ws)
            for i in reversed(range(len(Ws))):
                gW[i] = acts[i].T @ d
                gb[i] = d.sum(0)
                if i > 0:
                    d = (d @ Ws[i].T) * (acts[i] > 0)
            grads = gW + gb
            t += 1
            for j, (pp, gg) in enumerate(zip(params, grads)):
                m[j] = b1 * m[j] + (1 - b1) * gg
                v[j] = b2 * v[j] + (1 - b2) * gg * gg
                pp -= lr * (m[j] / (1 - b1**t)) / (np.sqrt(v[j] / (1 - b2**t)) + eps)
            steps += 1
    h = Xt
    for i in range(len(Ws)):
        h = h @ Ws[i] + bs_[i]
        if i < len(Ws) - 1:
            h = np.maximum(h, 0)
    return steps, float((h.argmax(1) == yt).mean())


def mlp_torch(X, y, Xt, yt, sizes, epochs, bs, lr, seed=0):
    import torch

    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    Xtt = torch.tensor(X)
    ytt = torch.tensor(y)
    g = torch.Generator().manual_seed(seed)
    steps = 0
    for _ in range(epochs):
        idx = torch.randperm(len(X), generator=g)
        for s in range(0, len(X), bs):
            bi = idx[s : s + bs]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(Xtt[bi]), ytt[bi])
            loss.backward()
            opt.step()
            steps += 1
    with torch.no_grad():
        acc = (net(torch.tensor(Xt)).argmax(1).numpy() == yt).mean()
    return steps, float(acc)
