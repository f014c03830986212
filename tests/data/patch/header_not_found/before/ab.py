class A:
    def run(self):
        return None

class B:
    def run(self):
        return None
