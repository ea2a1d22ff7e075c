#!/usr/bin/env python3
"""End-to-end checks of `nanochat chat-web` as real clients see it (test tooling only):

  openai   the official `openai` Python package against /v1: models, a completion, the same completion
           streamed (the chunks must add up to the same text at temperature 0), usage, finish_reason, and a
           400 that names the bad field.
  browser  Debian's chromium, headless, driven by selenium through chromedriver: the page loads, a message
           typed and sent with the keyboard streams an answer in (seen growing), tok/s is shown, the answer equals
           the API's greedy answer, the conversation survives a reload (localStorage), regenerate, edit, stop
           (the worker is freed), copy, markdown code blocks, and a 390 px phone width without sideways scrolling.

Starts the server itself on a free port with 2 workers and stops it at the end.

usage: serve_check.py NANOCHAT_BINARY BASE_DIR [--only openai|browser]
   BASE_DIR holds tokenizer/ and base_checkpoints/<tag>/ (scripts/test trains a tiny one).
Prints one PASS/FAIL line per check, SKIP lines for what cannot run here, then "serve_check: N passed, M failed".
"""
import json, os, socket, subprocess, sys, time, urllib.request

results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print(("PASS " if cond else "FAIL ") + name + ("" if cond or not detail else ": " + str(detail)[:400]), flush=True)
    return cond


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_json(url, body=None, timeout=60):
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def start_server(binary, base, port):
    env = dict(os.environ, NANOCHAT_BASE_DIR=base)
    log = open(os.path.join(base, "chat-web.log"), "w")
    proc = subprocess.Popen([binary, "chat-web", "-i", "base", "--port", str(port), "--num-workers", "2"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        try:
            if http_json(f"http://127.0.0.1:{port}/health", timeout=2).get("ready"):
                return proc
        except Exception:
            pass
        time.sleep(0.2)
    proc.kill()
    log.close()
    print(open(os.path.join(base, "chat-web.log")).read())
    raise SystemExit("serve_check: the server did not become ready")


def greedy_answer(port, messages, max_tokens):
    """The server's answer at temperature 0 through upstream's route (what the page uses), as one string."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/chat/completions",
                                 data=json.dumps({"messages": messages, "temperature": 0, "max_tokens": max_tokens}).encode(),
                                 headers={"Content-Type": "application/json"})
    text = ""
    with urllib.request.urlopen(req, timeout=120) as r:
        for event in r.read().decode().split("\n\n"):
            if event.startswith("data: "):
                text += json.loads(event[6:]).get("token", "")
    return text


def stop_piece(text):
    """Three characters of an answer, after its first, that can be typed as a stop sequence (no newline, no '|')."""
    for i in range(1, len(text) - 2):
        p = text[i:i + 3]
        if "\n" not in p and "|" not in p and p.strip():
            return p
    return None


def openai_checks(port):
    try:
        import openai
    except ImportError:
        print("!! SKIP openai client checks: the openai package is not installed")
        return
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="not-needed", max_retries=0)
    models = [m.id for m in client.models.list().data]
    check("openai: models.list names nanochat", "nanochat" in models, models)

    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Tell me about Emma."}]
    r = client.chat.completions.create(model="nanochat", messages=messages, max_tokens=24, temperature=0)
    text = r.choices[0].message.content
    check("openai: completion has text", isinstance(text, str) and len(text) > 0, r)
    check("openai: role and finish_reason", r.choices[0].message.role == "assistant"
          and r.choices[0].finish_reason in ("stop", "length"), r)
    u = r.usage
    check("openai: usage adds up", u is not None and u.prompt_tokens > 0 and 0 < u.completion_tokens <= 24
          and u.total_tokens == u.prompt_tokens + u.completion_tokens, u)

    stream = client.chat.completions.create(model="nanochat", messages=messages, max_tokens=24, temperature=0, stream=True)
    pieces, finish, roles, n = [], None, [], 0
    for chunk in stream:
        n += 1
        d = chunk.choices[0].delta
        if d.role:
            roles.append(d.role)
        if d.content:
            pieces.append(d.content)
        if chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    check("openai: stream arrives in several chunks", n > 3 and roles[:1] == ["assistant"], (n, roles))
    check("openai: streamed text equals the non-streamed text (temperature 0)", "".join(pieces) == text,
          ("".join(pieces), text))
    check("openai: stream ends with a finish_reason", finish == r.choices[0].finish_reason, finish)

    # temperature 1 with top_k 1 keeps only the best token: the greedy answer, whatever the seed
    r2 = client.chat.completions.create(model="nanochat", messages=messages, max_tokens=24, temperature=1.0, seed=7,
                                        extra_body={"top_k": 1})
    check("openai: top_k=1 through extra_body is greedy", r2.choices[0].message.content == text,
          (r2.choices[0].message.content, text))
    # top_p: a nucleus this small keeps only the most likely token (greedy at any temperature); 0 is refused
    r3 = client.chat.completions.create(model="nanochat", messages=messages, max_tokens=24, temperature=1.0, seed=3, top_p=1e-6)
    check("openai: top_p=1e-6 keeps only the best token (the greedy answer)", r3.choices[0].message.content == text,
          (r3.choices[0].message.content, text))
    a = client.chat.completions.create(model="nanochat", messages=messages, max_tokens=24, temperature=1.0, seed=11, top_p=0.9)
    b = client.chat.completions.create(model="nanochat", messages=messages, max_tokens=24, temperature=1.0, seed=11, top_p=0.9)
    check("openai: top_p=0.9 with a seed gives the same answer twice", a.choices[0].message.content == b.choices[0].message.content,
          (a.choices[0].message.content, b.choices[0].message.content))
    # stop: the greedy answer ends before the first occurrence of a piece of it, finish_reason stop, streamed too
    cut = stop_piece(text)
    check("openai: the answer has a piece to stop at", cut is not None, text)
    if cut:
        want = text[:text.index(cut)]
        rs = client.chat.completions.create(model="nanochat", messages=messages, max_tokens=24, temperature=0, stop=[cut, "\u2603"])
        check("openai: stop ends the answer before the stop sequence", rs.choices[0].message.content == want
              and rs.choices[0].finish_reason == "stop", (rs.choices[0].message.content, want, cut))
        streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="nanochat", messages=messages, max_tokens=24, temperature=0, stop=cut, stream=True))
        check("openai: stop while streaming shows nothing of the stop sequence", streamed == want, (streamed, want))
    # the penalties: greedy with a frequency penalty of 2 avoids what it already said (the plain greedy answer repeats)
    words = text.split()
    rf = client.chat.completions.create(model="nanochat", messages=messages, max_tokens=24, temperature=0, frequency_penalty=2.0)
    rp = client.chat.completions.create(model="nanochat", messages=messages, max_tokens=24, temperature=0, presence_penalty=2.0)
    check("openai: frequency_penalty and presence_penalty change a repeating greedy answer",
          len(set(words)) == len(words) or (rf.choices[0].message.content != text and rp.choices[0].message.content != text),
          (text, rf.choices[0].message.content, rp.choices[0].message.content))
    for bad, field in [({"top_p": 0}, "top_p"), ({"frequency_penalty": 3}, "frequency_penalty"),
                       ({"presence_penalty": -2.5}, "presence_penalty"), ({"stop": ["a", "b", "c", "d", "e"]}, "stop")]:
        try:
            client.chat.completions.create(model="nanochat", messages=messages, max_tokens=4, **bad)
            check(f"openai: {bad} is refused", False, "no error raised")
        except openai.BadRequestError as e:
            check(f"openai: {bad} is refused with 400 naming {field}", e.status_code == 400 and field in str(e), e)
    # a conversation longer than the model's context: the oldest turns are left out (the system message kept) and the
    # reply says so; a last message too long on its own is refused
    long_chat = [{"role": "system", "content": "You are terse."}]
    for i in range(12):
        long_chat += [{"role": "user", "content": f"Question {i}: tell me about Emma Woodhouse and Highbury."},
                      {"role": "assistant", "content": "Emma Woodhouse, handsome, clever, and rich, lived in Highbury."}]
    long_chat.append({"role": "user", "content": "And Mr. Knightley?"})
    rt = client.chat.completions.create(model="nanochat", messages=long_chat, max_tokens=16, temperature=0)
    note = (rt.model_extra or {}).get("nanochat") or {}
    check("openai: a conversation longer than the context is trimmed from its oldest turns, and the reply says so",
          note.get("trimmed_messages", 0) > 0 and "left out" in note.get("note", "") and rt.usage.prompt_tokens <= 256, (note, rt.usage))
    try:
        client.chat.completions.create(model="nanochat", messages=[{"role": "user", "content": "Emma " * 1500}], max_tokens=8)
        check("openai: a last message longer than the context is refused", False, "no error raised")
    except openai.BadRequestError as e:
        check("openai: a last message longer than the context is refused with 400", e.status_code == 400 and "last message alone" in str(e), e)
    try:
        client.chat.completions.create(model="nanochat", messages=messages, temperature=7)
        check("openai: temperature 7 is refused", False, "no error raised")
    except openai.BadRequestError as e:
        check("openai: temperature 7 is refused with 400 naming the field", e.status_code == 400 and "temperature" in str(e), e)
    try:
        client.chat.completions.create(model="nanochat", messages=[])
        check("openai: empty messages refused", False, "no error raised")
    except openai.BadRequestError as e:
        check("openai: empty messages refused with 400", e.status_code == 400 and "messages" in str(e), e)


def browser_checks(port):
    try:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        print("!! SKIP browser checks: selenium is not installed")
        return
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from headless import chromium
    driver, why = chromium(1000, 800)
    if driver is None:
        print(f"!! SKIP browser checks: {why}")
        return
    url = f"http://127.0.0.1:{port}/"
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(url)
        driver.execute_script("localStorage.clear()")
        driver.get(url)
        check("browser: page loads, input focused", driver.title.lower().startswith("nanochat")
              and driver.switch_to.active_element.get_attribute("id") == "input", driver.title)
        time.sleep(0.5)
        check("browser: no error banner (health reached)", not driver.find_element(By.ID, "error").is_displayed())

        # Watch the answer grow: record the length of the last assistant body at every DOM change.
        driver.execute_script("""
            window.__lengths = [];
            new MutationObserver(() => {
              const b = document.querySelectorAll('.msg.assistant .body');
              if (b.length) window.__lengths.push(b[b.length - 1].innerHTML.length);
            }).observe(document.getElementById('chat'), {childList: true, subtree: true, characterData: true});""")
        box = driver.find_element(By.ID, "input")
        box.send_keys("/temperature 0", Keys.ENTER)
        wait.until(lambda d: "temperature set to 0" in d.find_element(By.ID, "chat").text)
        box.send_keys("Who is Mr. Knightley?", Keys.ENTER)
        wait.until(lambda d: d.find_element(By.ID, "stop").is_displayed() or d.execute_script(
            "return JSON.parse(localStorage.nanochat).messages.some(m => m.role === 'assistant')"))
        wait.until(lambda d: d.find_element(By.ID, "send").is_displayed())
        lengths = driver.execute_script("return window.__lengths")
        grew = sorted(set(l for l in lengths if l > 0))
        check("browser: the streamed answer appears token by token", len(grew) >= 3, lengths[:20])
        state = driver.execute_script("return JSON.parse(localStorage.nanochat)")
        convo = [m for m in state["messages"] if m["role"] in ("user", "assistant")]
        answer = convo[-1]["content"] if convo and convo[-1]["role"] == "assistant" else ""
        check("browser: answer shown and stored", len(answer) > 0 and len(convo) == 2, state)
        expected = greedy_answer(port, [{"role": "user", "content": "Who is Mr. Knightley?"}], 512)
        check("browser: the page's answer equals the server's greedy answer", answer == expected, (answer[:80], expected[:80]))
        check("browser: tok/s shown", "tok/s" in driver.find_element(By.ID, "speed").text
              and "tok/s" in driver.find_element(By.CSS_SELECTOR, ".msg.assistant .tools").text)

        driver.refresh()
        bubbles = driver.find_elements(By.CSS_SELECTOR, ".msg.user, .msg.assistant")
        check("browser: conversation survives a reload (localStorage)", len(bubbles) == 2
              and bubbles[0].text == "Who is Mr. Knightley?", [b.text[:40] for b in bubbles])

        # Regenerate: same greedy answer again, still one user + one assistant message
        driver.find_element(By.XPATH, "//div[contains(@class,'assistant')]//button[text()='Regenerate']").click()
        wait.until(lambda d: d.find_element(By.ID, "send").is_displayed() and d.execute_script(
            "const m = JSON.parse(localStorage.nanochat).messages; return m.length && m[m.length-1].role === 'assistant'"))
        state = driver.execute_script("return JSON.parse(localStorage.nanochat)")
        convo = [m for m in state["messages"] if m["role"] in ("user", "assistant")]
        check("browser: regenerate replaces the answer", len(convo) == 2 and convo[1]["content"] == expected,
              [m["content"][:40] for m in convo])

        # Copy (clipboard permission granted through the DevTools protocol)
        driver.execute_cdp_cmd("Browser.grantPermissions", {"origin": url.rstrip("/"),
                               "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
        copy = driver.find_element(By.XPATH, "//div[contains(@class,'assistant')]//button[text()='Copy']")
        copy.click()
        wait.until(lambda d: copy.text == "Copied")
        clip = driver.execute_async_script("navigator.clipboard.readText().then(arguments[0], e => arguments[0]('ERR ' + e))")
        check("browser: copy puts the answer on the clipboard", clip == expected, clip[:80])

        # Edit: Tab to the user message, Enter puts it back in the input and drops what follows
        user = driver.find_element(By.CSS_SELECTOR, ".msg.user")
        driver.execute_script("arguments[0].focus()", user)
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        box = driver.find_element(By.ID, "input")
        check("browser: edit puts the message back in the input", box.get_attribute("value") == "Who is Mr. Knightley?"
              and not driver.find_elements(By.CSS_SELECTOR, ".msg.assistant"))
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys("Who is Emma?", Keys.ENTER)
        wait.until(lambda d: d.find_element(By.ID, "send").is_displayed() and d.find_elements(By.CSS_SELECTOR, ".msg.assistant"))
        state = driver.execute_script("return JSON.parse(localStorage.nanochat)")
        convo = [m for m in state["messages"] if m["role"] in ("user", "assistant")]
        check("browser: the edited message is sent instead", [m["role"] for m in convo] == ["user", "assistant"]
              and convo[0]["content"] == "Who is Emma?", [m["content"][:40] for m in convo])

        # Stop, by the button and by Esc, as soon as the first token shows: the answer is cut short and the
        # server's worker comes back
        for how, action in [("the Stop button", "document.getElementById('stop').click()"),
                            ("Esc", "document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape', bubbles: true}))")]:
            driver.execute_script("""
                window.__stopped = false;
                const obs = new MutationObserver(() => {
                  const b = document.querySelectorAll('.msg.assistant .body');
                  if (!window.__stopped && b.length && b[b.length-1].textContent.length > 0
                      && document.getElementById('stop').style.display !== 'none') {
                    window.__stopped = true; obs.disconnect(); %s;
                  }
                });
                obs.observe(document.getElementById('chat'), {childList: true, subtree: true, characterData: true});""" % action)
            box.send_keys("/clear", Keys.ENTER)
            box.send_keys("Who is Mr. Knightley?", Keys.ENTER)
            wait.until(lambda d: d.execute_script("return window.__stopped") and d.find_element(By.ID, "send").is_displayed())
            state = driver.execute_script("return JSON.parse(localStorage.nanochat)")
            got = [m["content"] for m in state["messages"] if m["role"] == "assistant"]
            check(f"browser: {how} cuts the answer short", len(got) == 1 and 0 < len(got[0]) < len(expected)
                  and expected.startswith(got[0]), (got, len(expected)))
            freed = False
            for _ in range(50):
                if http_json(f"http://127.0.0.1:{port}/stats")["available_workers"] == 2:
                    freed = True
                    break
                time.sleep(0.1)
            check(f"browser: stopping with {how} frees the server's worker", freed)

        # the page's sampling commands reach the server: top-p this small at temperature 1 is greedy, and /stop
        # ends the answer before a piece of it
        piece = stop_piece(expected)
        check("browser: the answer has a piece to stop at", piece is not None, expected)
        if piece:
            box.send_keys("/clear", Keys.ENTER)
            for cmd in ["/temperature 1", "/topp 0.000001", "/stop " + piece]:
                box.send_keys(cmd, Keys.ENTER)
            wait.until(lambda d: "stop set to" in d.find_element(By.ID, "chat").text)
            box.send_keys("Who is Mr. Knightley?", Keys.ENTER)
            wait.until(lambda d: d.find_element(By.ID, "send").is_displayed() and d.execute_script(
                "const m = JSON.parse(localStorage.nanochat).messages; return m.length && m[m.length-1].role === 'assistant'"))
            state = driver.execute_script("return JSON.parse(localStorage.nanochat)")
            got = [m["content"] for m in state["messages"] if m["role"] == "assistant"]
            want = expected[:expected.index(piece)]
            check("browser: /topp and /stop reach the server (greedy answer cut before the stop text)", got == [want], (got, want, piece))
            for cmd in ["/stop off", "/topp 1", "/temperature 0"]:
                box.send_keys(cmd, Keys.ENTER)

        # Markdown: code blocks escaped and fenced, inline code, bold
        html = driver.execute_script("return markdown('Say **hi**: `x`\\n```py\\nif a < b:\\n    pass\\n```')")
        check("browser: markdown code blocks", "<pre><code>if a &lt; b:\n    pass</code></pre>" in html
              and "<strong>hi</strong>" in html and "<code>x</code>" in html, html)

        # Phone width: nothing wider than the screen, the input and send button visible
        driver.set_window_size(390, 844)
        driver.refresh()
        time.sleep(0.3)
        width = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        check("browser: readable at 390 px (no sideways scroll)", width[0] <= width[1]
              and driver.find_element(By.ID, "send").is_displayed() and driver.find_element(By.ID, "input").is_displayed(), width)
        driver.save_screenshot(os.path.join(os.environ.get("SERVE_CHECK_SHOTS", "/tmp"), "nanochat_phone.png"))
    finally:
        driver.quit()


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    binary, base = sys.argv[1], sys.argv[2]
    only = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--only" else None
    port = free_port()
    proc = start_server(binary, base, port)
    try:
        if only in (None, "openai"):
            openai_checks(port)
        if only in (None, "browser"):
            browser_checks(port)
        check("server still up and healthy", proc.poll() is None and http_json(f"http://127.0.0.1:{port}/health")["ready"])
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    failed = results.count(False)
    print(f"serve_check: {len(results) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
